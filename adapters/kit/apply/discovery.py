"""Which kinds one cluster serves, and where: discovery, cached per group-version.

Kinds resolve to REST paths through discovery documents, cached per group-version and read
again on a miss (kinds whose CRDs were just created are found) or after a TTL. Servers with
aggregated discovery (1.30+) answer everything in two requests; older ones one document per
group-version.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from adapters.kit.apply.api_requests import ApiCall, ApiRequests

__all__ = ["AGGREGATED_DISCOVERY", "DISCOVERY_TTL_SECONDS", "ApiResource", "Discovery"]

_DISCOVERY_CONCURRENCY = 8
AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
"""Accept for `/api` and `/apis`: the aggregated documents when served, else the legacy ones."""
DISCOVERY_TTL_SECONDS = 300.0
"""How long one group-version's kinds are trusted for render capabilities (kubectl and Helm
trust their discovery cache for hours); kinds are also re-read on every miss."""

Kinds = dict[str, "ApiResource"]
"""kind → where it lives, for one group-version."""


@dataclass(frozen=True, kw_only=True)
class ApiResource:
    """One served kind: where its objects live in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection (or, with ``name``, object) URL path."""
        base = f"/api/{self.api_version}" if "/" not in self.api_version else ""
        base = base or f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def _is_aggregated(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "APIGroupDiscoveryList"


def _first_per_kind(resources: Iterable[ApiResource]) -> Kinds:
    """kind → resource; where a document names a kind twice, its first entry counts."""
    kinds: Kinds = {}
    for resource in resources:
        kinds.setdefault(resource.kind, resource)
    return kinds


def _version_kinds(api_version: str, version: dict[str, Any]) -> Kinds:
    """The kinds of one version entry of an aggregated document."""
    return _first_per_kind(
        ApiResource(
            api_version=api_version,
            kind=str((entry.get("responseKind") or {}).get("kind", "")),
            plural=str(entry.get("resource", "")),
            namespaced=entry.get("scope") == "Namespaced",
        )
        for entry in version.get("resources") or []
        if (entry.get("responseKind") or {}).get("kind") and entry.get("resource")
    )


def _aggregated_kinds(document: dict[str, Any]) -> dict[str, Kinds]:
    """group/version → kind → resource, from an APIGroupDiscoveryList (apidiscovery v2)."""
    found: dict[str, Kinds] = {}
    for group in document.get("items") or []:
        name = str((group.get("metadata") or {}).get("name") or "")
        for version in group.get("versions") or []:
            api_version = f"{name}/{version.get('version', '')}" if name else version.get("version")
            found[str(api_version)] = _version_kinds(str(api_version), version)
    return found


def _legacy_kinds(api_version: str, body: dict[str, Any]) -> Kinds:
    """The kinds of one group-version's APIResourceList (subresources left out)."""
    return _first_per_kind(
        ApiResource(
            api_version=api_version,
            kind=str(entry.get("kind", "")),
            plural=str(entry.get("name", "")),
            namespaced=bool(entry.get("namespaced")),
        )
        for entry in body.get("resources") or []
        # subresources such as deployments/status are not kinds
        if entry.get("name") and "/" not in str(entry.get("name"))
    )


def _listed_versions(document: Any) -> list[str]:
    """The group-versions a legacy `/api` (APIVersions) or `/apis` (APIGroupList) names."""
    if isinstance(document, dict) and document.get("kind") == "APIVersions":
        return [str(v) for v in document.get("versions") or []]
    return [
        str(v.get("groupVersion", ""))
        for group in (document or {}).get("groups") or []
        for v in group.get("versions") or []
    ]


class Discovery:
    """The kinds one cluster serves, cached per group-version (None: not served)."""

    def __init__(self, requests: ApiRequests, *, ttl: float = DISCOVERY_TTL_SECONDS) -> None:
        self._requests = requests
        self._ttl = ttl
        self._kinds: dict[str, Kinds | None] = {}
        self._generation: dict[str, int] = {}
        self._read_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def _fetch(self, api_version: str) -> Kinds | None:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        call = ApiCall(method="GET", path=path, verb="discover", resource=api_version)
        status, body = await self._requests.send(call, missing_ok=True)
        if status == 404 or not isinstance(body, dict):
            return None
        return _legacy_kinds(api_version, body)

    async def _root(self, path: str, resource: str) -> Any:
        call = ApiCall(
            method="GET", path=path, verb="discover", resource=resource, accept=AGGREGATED_DISCOVERY
        )
        _, body = await self._requests.send(call)
        return body

    async def api_versions(self) -> list[str]:
        """Every served group/version and group/version/Kind, as Helm's capabilities list them.

        Servers with aggregated discovery answer everything in two requests, always current;
        from older servers each group/version's document is read once and kept for resolving
        kinds (re-read after the TTL or on a miss).
        """
        documents = await asyncio.gather(self._root("/api", "api"), self._root("/apis", "apis"))
        current: dict[str, Kinds] = {}
        versions: list[str] = []
        for document in documents:
            if _is_aggregated(document):
                aggregated = _aggregated_kinds(document)
                current.update(aggregated)
                versions.extend(aggregated)
            else:
                versions.extend(_listed_versions(document))
        served = [v for v in dict.fromkeys(versions) if v]
        self._expire(served)
        self._store(current)
        kinds = await self._served_kinds(served)
        return sorted({*served, *kinds})

    def _expire(self, served: Iterable[str]) -> None:
        """Group-versions no longer served (their CRDs were deleted) are forgotten; kinds read
        longer ago than the TTL are read again."""
        still = set(served)
        stale_before = time.monotonic() - self._ttl
        for known in list(self._kinds):
            if known not in still or self._read_at.get(known, 0.0) < stale_before:
                self.forget(known)

    def _store(self, current: dict[str, Kinds]) -> None:
        """Aggregated answers replace what was known."""
        now = time.monotonic()
        for api_version, kinds_of in current.items():
            self._kinds[api_version] = kinds_of
            self._generation[api_version] = self._generation.get(api_version, 0) + 1
            self._read_at[api_version] = now

    async def _served_kinds(self, served: list[str]) -> list[str]:
        """group/version/Kind of every kind of ``served``, reading what is not known yet."""
        limit = asyncio.Semaphore(_DISCOVERY_CONCURRENCY)

        async def kinds(api_version: str) -> list[str]:
            found = self._kinds.get(api_version)
            if found is None:
                async with limit:
                    found = await self._refresh(api_version)
            return [f"{api_version}/{kind}" for kind in found or {}]

        per_version = await asyncio.gather(*(kinds(v) for v in served))
        return [kind for found in per_version for kind in found]

    async def resource_for(self, api_version: str, kind: str) -> ApiResource | None:
        """Resolve a kind, refreshing its group-version's discovery once on a miss."""
        cached = self._kinds.get(api_version)
        if cached is not None and kind in cached:
            return cached[kind]
        found = await self._refresh(api_version)
        return found.get(kind) if found is not None else None

    async def _refresh(self, api_version: str) -> Kinds | None:
        """Read one group-version's discovery again (None: the cluster does not serve it)."""
        seen = self._generation.get(api_version, 0)
        lock = self._locks.setdefault(api_version, asyncio.Lock())
        async with lock:
            # Someone refreshed while we waited: use their answer rather than asking again.
            if self._generation.get(api_version, 0) == seen:
                self._kinds[api_version] = await self._fetch(api_version)
                self._generation[api_version] = seen + 1
                self._read_at[api_version] = time.monotonic()
        return self._kinds.get(api_version)

    def forget(self, api_version: str) -> None:
        """Drop what is known of ``api_version`` (its kind went away, or it is stale)."""
        self._kinds.pop(api_version, None)
        self._generation[api_version] = self._generation.get(api_version, 0) + 1
