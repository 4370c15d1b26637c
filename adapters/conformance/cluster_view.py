"""Read-only view of the cluster under test: which objects carry meshplane's labels.

The suite judges "installs and deletes cleanly" by looking at the cluster itself, not by trusting
the adapter's report, so it reads every served kind (discovery, then one labelled list per
resource) with its own `kubernetes.aio` client built from the kubeconfig it was given. Of the
adapter kit it borrows only the raw request (`call_json`): its discovery (every listable kind,
not one kind on demand) and listing (no retries, forbidden kinds skipped, its own page size) are
not the apply engine's, so a third-party adapter is judged by an independent reader.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog
from kubernetes.aio import config as _typed_kube_config
from kubernetes.aio.client.exceptions import ApiException

from adapters.kit.apply.api_requests import call_json
from serving.kubernetes_transport import resolve_proxy_once

__all__ = [
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MANAGED_SELECTOR",
    "MESH_LABEL",
    "RELEASE_LABEL",
    "ClusterView",
    "ClusterViewError",
    "ManagedObject",
]

_log = structlog.get_logger(__name__)

# The labelling convention every meshplane adapter follows (docs/writing-an-adapter.md).
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "meshplane"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
RELEASE_LABEL = "meshplane.io/release"
MESH_LABEL = "meshplane.io/mesh"
"""Which mesh's adapter applied the object: managed-by is shared by every mesh in the cluster."""

_PARALLEL_LISTS = 8
# The client's config loaders carry no annotations.
_kube_config: Any = _typed_kube_config


class ClusterViewError(Exception):
    """The cluster cannot be read (bad kubeconfig, unreachable or refusing API server)."""


@dataclass(frozen=True, kw_only=True, order=True)
class ManagedObject:
    """Identity of one labelled object (group, not version: one object is served at many)."""

    group: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {where}"


@dataclass(frozen=True, kw_only=True)
class _Resource:
    group_version: str
    plural: str
    kind: str

    @property
    def path(self) -> str:
        root = "/api" if "/" not in self.group_version else "/apis"
        return f"{root}/{self.group_version}/{self.plural}"

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]


class ClusterView:
    """Lists meshplane-labelled objects of every served kind; ``async with`` closes it."""

    def __init__(self, api: Any, *, request_timeout: float = 30.0, page_size: int = 500) -> None:
        self._api = api
        self._timeout = request_timeout
        self._page = page_size

    @classmethod
    async def connect(
        cls,
        kubeconfig: Path,
        *,
        context: str | None = None,
        request_timeout: float = 30.0,
        page_size: int = 500,
    ) -> ClusterView:
        """A view on the cluster ``kubeconfig`` (and ``context``, default current) names."""
        try:
            api = await _kube_config.new_client_from_config(
                config_file=str(kubeconfig), context=context or None, persist_config=False
            )
        except (_kube_config.ConfigException, OSError, ValueError) as exc:
            raise ClusterViewError(f"cannot load kubeconfig {kubeconfig}: {exc}") from exc
        return cls(resolve_proxy_once(api), request_timeout=request_timeout, page_size=page_size)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def server(self) -> str:
        """API server URL from the kubeconfig."""
        return str(self._api.configuration.host)

    async def _get(self, path: str, query: list[tuple[str, str]] | None = None) -> Any:
        _status, body = await call_json(
            self._api, "GET", path, query=list(query or []), request_timeout=self._timeout
        )
        return body

    async def _get_or_fail(self, path: str) -> Any:
        try:
            return await self._get(path)
        except (ApiException, OSError, TimeoutError) as exc:
            raise ClusterViewError(f"GET {self.server}{path} failed: {_reason(exc)}") from exc

    async def _resources(self) -> list[_Resource]:
        """Every listable resource at each group's preferred version (and core v1)."""
        group_versions = ["v1"]
        groups = await self._get_or_fail("/apis")
        for group in (groups or {}).get("groups") or []:
            preferred = (group.get("preferredVersion") or {}).get("groupVersion")
            if preferred:
                group_versions.append(str(preferred))
        found: list[_Resource] = []
        for group_version in group_versions:
            root = "/api" if group_version == "v1" else "/apis"
            try:
                listing = await self._get(f"{root}/{group_version}")
            except (ApiException, OSError, TimeoutError) as exc:
                # An unavailable aggregated API (e.g. metrics) must not hide every other kind.
                _log.warning(
                    "conformance.discovery_skipped", group_version=group_version, error=_reason(exc)
                )
                continue
            for entry in (listing or {}).get("resources") or []:
                name = str(entry.get("name", ""))
                if not name or "/" in name or "list" not in (entry.get("verbs") or []):
                    continue
                found.append(
                    _Resource(group_version=group_version, plural=name, kind=str(entry["kind"]))
                )
        return found

    async def _list(self, resource: _Resource, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(self._page))]
            if token:
                query.append(("continue", token))
            try:
                page = await self._get(resource.path, query)
            except ApiException as exc:
                if exc.status in (403, 404, 405):
                    _log.warning(
                        "conformance.list_skipped", resource=resource.path, status=exc.status
                    )
                    return items
                raise ClusterViewError(f"listing {resource.path} failed: {_reason(exc)}") from exc
            except (OSError, TimeoutError) as exc:
                raise ClusterViewError(f"listing {resource.path} failed: {_reason(exc)}") from exc
            items.extend((page or {}).get("items") or [])
            token = str(((page or {}).get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    async def labelled(
        self, selector: str = MANAGED_SELECTOR
    ) -> dict[ManagedObject, dict[str, str]]:
        """Every object matching ``selector`` in any served kind, with its labels."""
        resources = await self._resources()
        gate = asyncio.Semaphore(_PARALLEL_LISTS)

        async def one(resource: _Resource) -> list[tuple[ManagedObject, dict[str, str]]]:
            async with gate:
                items = await self._list(resource, selector)
            found = []
            for item in items:
                metadata = item.get("metadata") or {}
                key = ManagedObject(
                    group=resource.group,
                    kind=resource.kind,
                    namespace=str(metadata.get("namespace") or ""),
                    name=str(metadata.get("name") or ""),
                )
                found.append(
                    (key, {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()})
                )
            return found

        listed = await asyncio.gather(*(one(resource) for resource in resources))
        return {key: labels for pairs in listed for key, labels in pairs}

    async def config_map_exists(self, namespace: str, name: str) -> bool:
        """Whether the ConfigMap exists (what the suite's custom body creates)."""
        try:
            await self._get(f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise ClusterViewError(f"reading ConfigMap {namespace}/{name}: {_reason(exc)}") from exc
        except (OSError, TimeoutError) as exc:
            raise ClusterViewError(f"reading ConfigMap {namespace}/{name}: {_reason(exc)}") from exc
        return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason or ''}".strip()
    return f"{type(exc).__name__}: {exc}"
