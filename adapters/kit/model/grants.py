"""What one admitted operation may do beyond the object policy's defaults.

`PolicyGrant` is the whole seam between *who may do more* and *what doing more means*: the runner
builds one per admitted operation and records it with the operation; `object_policy` and the
apply engine only read it. It is the operator's switches (adapter flags) OR'ed with the
request's own ``adopt-existing`` parameter and, for a caller a trusted coordinator vouches for as
a member of ``meshplane:admins``, `ADMIN_GRANT`.

A grant is never persisted: an operation resumed after a restart is admitted again and gets the
grant the adapter's settings give at that time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ADMIN_GRANT", "NO_GRANT", "PolicyGrant"]


@dataclass(frozen=True, kw_only=True)
class PolicyGrant:
    """Permissions beyond the default policy; every field defaults to not granted."""

    elevated: bool = False
    """Request-supplied objects may be cluster-scoped, RBAC beyond the namespace, admission
    control, CRDs, PriorityClasses, or privileged workloads (operator: --allow-elevated-objects)."""
    protected_namespaces: bool = False
    """Objects may be written in protected namespaces (operator: --allow-protected-namespaces)."""
    adopt: bool = False
    """Existing objects meshplane does not own may be taken over (request: adopt-existing=true);
    adopting in a protected namespace or a cluster-scoped object also needs those grants."""

    def __or__(self, other: PolicyGrant) -> PolicyGrant:
        """Everything either grant allows."""
        return PolicyGrant(
            elevated=self.elevated or other.elevated,
            protected_namespaces=self.protected_namespaces or other.protected_namespaces,
            adopt=self.adopt or other.adopt,
        )


NO_GRANT = PolicyGrant()
"""The default: nothing beyond the policy's defaults."""

ADMIN_GRANT = PolicyGrant(elevated=True, protected_namespaces=True)
"""What an admin (``meshplane:admins``, forwarded by a trusted coordinator) may do beyond the
defaults: elevated objects and protected namespaces. Adoption stays the request's choice."""
