"""A `ClusterReader` that records each read as a need and answers it with one sample object."""

from __future__ import annotations

from typing import Any

from adapters.kit.model.objects import KubeObject
from adapters.rbac.collecting import NeedCollector

__all__ = ["RecordingReader"]


class RecordingReader:
    """A `ClusterReader` that records reads and answers each with one sample object, so
    builders and checks walk the paths they take on a populated cluster."""

    def __init__(self, collector: NeedCollector, why: str) -> None:
        self._collector = collector
        self.why = why

    @staticmethod
    def _sample(api_version: str, kind: str, name: str, namespace: str | None) -> KubeObject:
        metadata: dict[str, Any] = {"name": name, "labels": {}, "annotations": {}}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": metadata,
            "spec": {},
            "status": {},
        }

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """Record ``get`` on the kind; the sample object."""
        self._collector.need(api_version, kind, ("get",), f"{self.why} reads {kind} {name}")
        return self._sample(api_version, kind, name, namespace)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        """Record ``list`` on the kind; one sample object."""
        self._collector.need(api_version, kind, ("list",), f"{self.why} lists {kind}")
        return [self._sample(api_version, kind, f"sample-{kind.lower()}", namespace or "sample")]

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Always served: discovery is readable by every authenticated user (system:discovery)."""
        return True
