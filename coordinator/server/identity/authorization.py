"""Whether a subject may do what a call needs: built-in roles from groups, or Kubernetes RBAC.

``RoleAuthorizer`` maps the groups ``meshplane:viewers|operators|admins`` to roles and checks
the ``GRANTS`` table; ``--authz-kubernetes`` asks a SubjectAccessReview per access instead
(``access_review``). ``OpenAuthorizer`` allows everything: it is used only when no
authentication is configured and ``--allow-anonymous`` was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.server.identity.permissions import ROLE_GROUPS, Access, Role, least_role, role_of
from coordinator.server.identity.subjects import Subject

__all__ = ["Authorizer", "Denial", "OpenAuthorizer", "RoleAuthorizer", "first_denial"]


@dataclass(frozen=True, kw_only=True)
class Denial:
    """Why ``access`` was refused (the message names the verb, resource and namespace)."""

    access: Access
    reason: str

    def message(self, subject: Subject) -> str:
        """The PERMISSION_DENIED details."""
        return f"{subject.user[:100]!r} may not {self.access.describe()}: {self.reason}"


class Authorizer(Protocol):
    """Decides one access for one subject."""

    async def authorize(self, subject: Subject, access: Access) -> Denial | None:
        """None when allowed, else why not."""
        ...


async def first_denial(
    authorizer: Authorizer, subject: Subject, accesses: Sequence[Access]
) -> Denial | None:
    """The first of ``accesses`` refused, or None when all are allowed."""
    for access in accesses:
        denial = await authorizer.authorize(subject, access)
        if denial is not None:
            return denial
    return None


_GROUP_OF = {role: group for group, role in ROLE_GROUPS.items()}


class RoleAuthorizer:
    """The three built-in roles, carried by groups."""

    async def authorize(self, subject: Subject, access: Access) -> Denial | None:
        """Allowed when the subject's best role holds the access."""
        needed = least_role(access)
        held = role_of(subject)
        if held >= needed:
            return None
        has = f"role {held.name.lower()}" if held > Role.NONE else "no meshplane role"
        return Denial(
            access=access,
            reason=f"that needs role {needed.name.lower()} (group {_GROUP_OF[needed]}); "
            f"the caller has {has}",
        )


class OpenAuthorizer:
    """Everything allowed (no authentication configured, --allow-anonymous)."""

    async def authorize(self, subject: Subject, access: Access) -> Denial | None:
        """Always None."""
        return None
