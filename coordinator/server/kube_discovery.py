"""Adapters found in Kubernetes: Services labelled ``meshplane.io/adapter=<mesh>`` and their
EndpointSlices (``discovery.k8s.io/v1``) in one namespace.

Each ready endpoint address, with the slice's port named ``grpc`` (or its only port), is one
replica; an endpoint that turns not ready, or whose slice or Service goes away, leaves the
registry. Services and EndpointSlices are each listed once and then watched from the list's
resourceVersion; a watch that ends resumes from the last version seen, and one whose version
expired (410 Gone) lists again. Only replicas this source added are ever removed by it.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from kubernetes.aio import watch as _kube_watch

from coordinator.server.kube_api import kube_client, open_api_client
from coordinator.server.registry import Registry
from coordinator.server.replicas import Source
from serving.background_tasks import BackgroundTasks
from serving.retry_policies import BackoffWait

__all__ = ["ADAPTER_LABEL", "SERVICE_NAME_LABEL", "KubeDiscovery", "replicas_from_slices"]

_log = structlog.get_logger(__name__)

ADAPTER_LABEL = "meshplane.io/adapter"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
GRPC_PORT_NAME = "grpc"
WATCH_SECONDS = 300

# The client's modules carry no usable annotations.
kube_watch: Any = _kube_watch

Obj = dict[str, Any]


def _endpoint_address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _grpc_port(slice_obj: Obj) -> int | None:
    ports = [p for p in slice_obj.get("ports") or [] if p.get("port")]
    named = [p for p in ports if p.get("name") == GRPC_PORT_NAME]
    if named:
        return int(named[0]["port"])
    if len(ports) == 1:
        return int(ports[0]["port"])
    return None


def replicas_from_slices(services: dict[str, str], slices: list[Obj]) -> dict[str, str]:
    """address → mesh for every ready endpoint of an adapter Service (name → mesh).

    A missing ``ready`` condition counts as ready, as the EndpointSlice API specifies.
    """
    found: dict[str, str] = {}
    for slice_obj in slices:
        labels = (slice_obj.get("metadata") or {}).get("labels") or {}
        mesh = services.get(labels.get(SERVICE_NAME_LABEL, ""))
        port = _grpc_port(slice_obj)
        if mesh is None or port is None:
            continue
        for endpoint in slice_obj.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for ip in endpoint.get("addresses") or []:
                found[_endpoint_address(ip, port)] = mesh
    return found


class KubeDiscovery:
    """Follows adapter Services and EndpointSlices in a namespace and keeps the registry in step."""

    def __init__(
        self,
        registry: Registry,
        *,
        namespace: str,
        kubeconfig: Path | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self._registry = registry
        self._namespace = namespace
        self._kubeconfig = kubeconfig
        self._watch_seconds = watch_seconds
        self._backoff = BackoffWait(initial=backoff_initial, maximum=backoff_max)
        self._rng = random.Random()
        self._tasks = BackgroundTasks(owner="kube-discovery")
        self._api: Any = None
        self._services: dict[str, str] = {}  # Service name → mesh
        self._slices: dict[str, Obj] = {}  # EndpointSlice name → object
        self._added: set[str] = set()
        self._refused: set[str] = set()
        self._synced = asyncio.Event()
        self._listed: set[str] = set()

    async def start(self) -> None:
        """Connect (the kubeconfig; in a pod without one, the ServiceAccount) and start both
        watches."""
        self._api = await open_api_client(self._kubeconfig)
        core = kube_client.CoreV1Api(self._api)
        discovery = kube_client.DiscoveryV1Api(self._api)
        self._tasks.start(
            "services",
            self._follow("services", core.list_namespaced_service, ADAPTER_LABEL, self._on_service),
        )
        self._tasks.start(
            "endpointslices",
            self._follow(
                "endpointslices",
                discovery.list_namespaced_endpoint_slice,
                SERVICE_NAME_LABEL,
                self._on_slice,
            ),
        )
        _log.info("discovery.started", namespace=self._namespace)

    async def wait_synced(self) -> None:
        """Until both lists have been read once (tests, and `meshplane up` readiness)."""
        await self._synced.wait()

    async def stop(self) -> None:
        """Stop watching; replicas found so far stay until the registry closes."""
        await self._tasks.stop(grace_seconds=5.0)
        if self._api is not None:
            await self._api.close()
            self._api = None

    # -- watching ----------------------------------------------------------------------------

    async def _follow(
        self,
        kind: str,
        list_fn: Callable[..., Awaitable[Any]],
        selector: str,
        apply: Callable[[str, Obj], None],
    ) -> None:
        failures = 0
        while True:
            try:
                version = await self._list(kind, list_fn, selector, apply)
                failures = 0
                while True:
                    version = await self._watch(list_fn, selector, version, apply)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if getattr(exc, "status", None) == 410:  # our version expired: list again
                    _log.info("discovery.relist", kind=kind, namespace=self._namespace)
                    continue
                failures += 1
                ceiling = self._backoff.step(failures)
                _log.warning(
                    "discovery.watch_failed",
                    kind=kind,
                    namespace=self._namespace,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(ceiling, 2),
                )
                await asyncio.sleep(self._rng.uniform(ceiling / 2, ceiling))

    async def _list(
        self,
        kind: str,
        list_fn: Callable[..., Awaitable[Any]],
        selector: str,
        apply: Callable[[str, Obj], None],
    ) -> str:
        method: Any = list_fn
        raw_list = getattr(method.__self__, f"{method.__name__}_without_preload_content")
        response = await raw_list(self._namespace, label_selector=selector)
        try:
            text = await response.read()
            if response.status >= 400:
                raise RuntimeError(f"listing {kind} failed: HTTP {response.status}: {text[:300]!r}")
            body = json.loads(text)
        finally:
            response.release()
        apply("SYNC", body)
        self._listed.add(kind)
        if len(self._listed) == 2:
            self._synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def _watch(
        self,
        list_fn: Callable[..., Awaitable[Any]],
        selector: str,
        version: str,
        apply: Callable[[str, Obj], None],
    ) -> str:
        """One watch request from ``version``; returns the version to resume from."""
        watcher = kube_watch.Watch()
        try:
            async for event in watcher.stream(
                list_fn,
                self._namespace,
                label_selector=selector,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_seconds,
            ):
                kind = str(event.get("type", ""))
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    apply(kind, event["raw_object"])
        finally:
            await watcher.close()
        return str(watcher.resource_version or version)

    # -- state -------------------------------------------------------------------------------

    def _on_service(self, kind: str, obj: Obj) -> None:
        if kind == "SYNC":
            self._services = {}
            for item in obj.get("items") or []:
                self._remember_service(item)
        elif kind == "DELETED":
            self._services.pop(obj["metadata"]["name"], None)
        else:
            self._services.pop(obj["metadata"]["name"], None)
            self._remember_service(obj)
        self._reconcile()

    def _remember_service(self, service: Obj) -> None:
        labels = (service.get("metadata") or {}).get("labels") or {}
        mesh = str(labels.get(ADAPTER_LABEL, "")).strip().lower()
        if mesh:
            self._services[service["metadata"]["name"]] = mesh

    def _on_slice(self, kind: str, obj: Obj) -> None:
        if kind == "SYNC":
            self._slices = {item["metadata"]["name"]: item for item in obj.get("items") or []}
        elif kind == "DELETED":
            self._slices.pop(obj["metadata"]["name"], None)
        else:
            self._slices[obj["metadata"]["name"]] = obj
        self._reconcile()

    def _reconcile(self) -> None:
        desired = replicas_from_slices(self._services, list(self._slices.values()))
        for address in sorted(self._added - desired.keys()):
            self._added.discard(address)
            self._registry.discard(address)
            _log.info("discovery.replica_gone", address=address)
        for address, mesh in sorted(desired.items()):
            existing = self._registry.get(address)
            if existing is not None and address in self._added and existing.mesh != mesh:
                self._registry.discard(address)  # relabelled for another mesh: a new replica
                existing = None
            if existing is not None:
                continue  # known already (static, dynamic or found before)
            try:
                self._registry.add(address, mesh=mesh, source=Source.KUBERNETES)
            except ValueError as exc:  # plaintext to a pod IP without --allow-insecure-adapters
                if address not in self._refused:
                    self._refused.add(address)
                    _log.error("discovery.replica_refused", address=address, error=str(exc))
                continue
            self._added.add(address)
            _log.info("discovery.replica_found", address=address, mesh=mesh)
