"""Read access to one cluster, as plan builders, conditions and checks see it (kit-implemented)."""

from __future__ import annotations

from typing import Protocol

from adapters.kit.model.objects import KubeObject

__all__ = ["ClusterReader"]


class ClusterReader(Protocol):
    """Read access to one cluster, for plan builders and checks (implemented by the kit)."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """Return the object, or None when it (or its kind) does not exist."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        """List objects; an unknown kind gives an empty list."""
        ...

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. the mesh's CRDs are installed)."""
        ...
