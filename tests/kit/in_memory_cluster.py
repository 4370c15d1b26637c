"""A `ClusterReader` over a list of objects, for plan builders and checks that only read.

Label selectors support the equality form (``a=b,c=d``) builders and checks use.
"""

from __future__ import annotations

from adapters.kit.model.objects import KubeObject


class InMemoryCluster:
    """Objects keyed by (apiVersion, kind); namespaced lookups filter on metadata.namespace."""

    def __init__(self, objects: list[KubeObject] | None = None) -> None:
        self.objects: list[KubeObject] = list(objects or [])

    def add(self, *objects: KubeObject) -> None:
        self.objects.extend(objects)

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        for obj in await self.list(api_version, kind, namespace):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        wanted = dict(term.split("=", 1) for term in label_selector.split(",") if term)
        found: list[KubeObject] = []
        for obj in self.objects:
            metadata = obj.get("metadata") or {}
            if (obj.get("apiVersion"), obj.get("kind")) != (api_version, kind):
                continue
            if namespace is not None and metadata.get("namespace") != namespace:
                continue
            labels = metadata.get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                found.append(obj)
        return found

    async def has_kind(self, api_version: str, kind: str) -> bool:
        return any(
            (o.get("apiVersion"), o.get("kind")) == (api_version, kind) for o in self.objects
        )
