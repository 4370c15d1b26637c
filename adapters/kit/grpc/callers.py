"""Who asked for a call, as the coordinator forwards it: ``x-meshplane-subject``, ``-groups``,
``-uid`` metadata.

Read only from a caller the adapter trusts as its coordinator (the link token, or a client
certificate from ``--tls-client-ca``); from anybody else those headers mean nothing. Values are
percent-encoded UTF-8 and groups are comma-separated (a comma inside a group name encoded), as
the coordinator writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

__all__ = [
    "ADMINS_GROUP",
    "GROUPS_HEADER",
    "SUBJECT_HEADER",
    "UID_HEADER",
    "ForwardedCaller",
    "forwarded_caller",
]

SUBJECT_HEADER = "x-meshplane-subject"
GROUPS_HEADER = "x-meshplane-groups"
UID_HEADER = "x-meshplane-uid"
ADMINS_GROUP = "meshplane:admins"
_MAX_VALUE = 4096


@dataclass(frozen=True, kw_only=True)
class ForwardedCaller:
    """The end user a trusted coordinator called on behalf of."""

    subject: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def admin(self) -> bool:
        """True for a member of ``meshplane:admins``: the adapter's object policy elevates it."""
        return ADMINS_GROUP in self.groups


def forwarded_caller(metadata: Any) -> ForwardedCaller | None:
    """The caller named by the identity headers of ``metadata``; None when there is no subject."""
    values: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (SUBJECT_HEADER, GROUPS_HEADER, UID_HEADER) and key not in values:
            text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
            values[key] = text[:_MAX_VALUE]
    subject = unquote(values.get(SUBJECT_HEADER, "")).strip()
    if not subject:
        return None
    groups = tuple(
        unquote(part) for part in values.get(GROUPS_HEADER, "").split(",") if part.strip()
    )
    return ForwardedCaller(subject=subject, groups=groups, uid=unquote(values.get(UID_HEADER, "")))
