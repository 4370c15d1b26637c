"""The authenticated caller of one coordinator RPC, and how it travels on to adapters.

The gate (``coordinator.server.identity.gate``) sets :data:`CURRENT_SUBJECT` for the duration of
each call; code that calls an adapter on the caller's behalf adds :func:`forwarded_identity` to the
call's metadata, so the adapter records who asked (it trusts those headers only from a
coordinator it trusts).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "ANONYMOUS",
    "ANONYMOUS_GROUP",
    "AUTHENTICATED_GROUP",
    "CURRENT_SUBJECT",
    "GROUPS_HEADER",
    "IDENTITY_HEADERS",
    "SUBJECT_HEADER",
    "UID_HEADER",
    "Subject",
    "forwarded_identity",
]

SUBJECT_HEADER = "x-meshplane-subject"
GROUPS_HEADER = "x-meshplane-groups"
UID_HEADER = "x-meshplane-uid"
IDENTITY_HEADERS = frozenset({SUBJECT_HEADER, GROUPS_HEADER, UID_HEADER})
"""Metadata the coordinator sets on forwarded calls; a caller's own values are dropped."""

ANONYMOUS_USER = "system:anonymous"
ANONYMOUS_GROUP = "system:unauthenticated"
AUTHENTICATED_GROUP = "system:authenticated"


@dataclass(frozen=True, kw_only=True)
class Subject:
    """A user name, an optional uid and groups, as Kubernetes describes a requester."""

    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    authenticated_by: str = ""
    """Which authenticator vouched for it: "token-file", "kubernetes", "certificate", ""."""

    @property
    def anonymous(self) -> bool:
        """True for a caller that presented no credentials (only with --allow-anonymous)."""
        return not self.authenticated_by


ANONYMOUS = Subject(user=ANONYMOUS_USER, groups=(ANONYMOUS_GROUP,))

CURRENT_SUBJECT: ContextVar[Subject | None] = ContextVar("meshplane_subject", default=None)


def forwarded_identity() -> tuple[tuple[str, str], ...]:
    """Identity metadata for a call made on behalf of the current caller (none outside a call).

    Values are percent-encoded UTF-8 (``%`` and anything outside printable ASCII; decode with
    ``urllib.parse.unquote``); groups are joined by commas, a comma inside a group name encoded.
    """
    subject = CURRENT_SUBJECT.get()
    if subject is None:
        return ()
    groups = ",".join(_header_value(group, comma=True) for group in subject.groups)
    headers = [(SUBJECT_HEADER, _header_value(subject.user)), (GROUPS_HEADER, groups)]
    if subject.uid:
        headers.append((UID_HEADER, _header_value(subject.uid)))
    return tuple(headers)


_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%")


def _header_value(text: str, *, comma: bool = False) -> str:
    """Printable ASCII as is; ``%``, other characters (and commas, when asked) %-encoded."""
    return quote(text, safe=_PRINTABLE.replace(",", "") if comma else _PRINTABLE)
