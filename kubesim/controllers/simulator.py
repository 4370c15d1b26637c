"""The simulator: every controller of the package over one queue, fed by store events.

One named task drains a queue of keys fed by store events; each key names the reconciler that
handles it (`Simulator._reconcilers`), and `_on_event` decides which keys an event touches:
the object's own, its controller owner's, autoscalers of a scaled target, garbage collection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from kubesim import rbac
from kubesim.cluster import NAMESPACES, Cluster
from kubesim.controllers.aggregation import RoleAggregation
from kubesim.controllers.autoscalers import AutoscalerController
from kubesim.controllers.collection import LifecycleControllers
from kubesim.controllers.daemonsets import DaemonSetController
from kubesim.controllers.deployments import DeploymentController
from kubesim.controllers.endpoints import ServiceControllers
from kubesim.controllers.jobs import JobController
from kubesim.controllers.kubelet import Kubelet
from kubesim.controllers.reconciling import (
    DAEMONSETS,
    DEPLOYMENTS,
    FAIL_ANNOTATION,
    HPAS,
    JOBS,
    PODS,
    PVCS,
    REPLICASETS,
    SERVICES,
    STATEFULSETS,
    controller_uid,
)
from kubesim.controllers.replicasets import ReplicaSetController
from kubesim.controllers.statefulsets import StatefulSetController
from kubesim.controllers.volumes import VolumeControllers
from kubesim.errors import ApiError
from kubesim.store import StoredEvent

log = structlog.get_logger(__name__)

__all__ = ["FAIL_ANNOTATION", "Simulator"]

_OWN_KEYS: dict[tuple[str, str], str] = {
    DEPLOYMENTS: "deployment",
    REPLICASETS: "replicaset",
    STATEFULSETS: "statefulset",
    DAEMONSETS: "daemonset",
    JOBS: "job",
    SERVICES: "service",
    NAMESPACES: "namespace",
    PVCS: "claim",
    HPAS: "autoscaler",
}
"""The reconciler an object of each storage key is queued for, under its own name."""

_POD_OWNERS = ("replicaset", "statefulset", "daemonset", "job")
_SCALED = (DEPLOYMENTS, STATEFULSETS, REPLICASETS)


class Simulator(
    Kubelet,
    DeploymentController,
    ReplicaSetController,
    StatefulSetController,
    DaemonSetController,
    JobController,
    AutoscalerController,
    ServiceControllers,
    LifecycleControllers,
    VolumeControllers,
    RoleAggregation,
):
    """Owns the reconcile task; `start`/`stop` belong to the server's lifecycle."""

    def __init__(self, cluster: Cluster, *, ready_delay: float) -> None:
        super().__init__(cluster, ready_delay=ready_delay)
        self._reconcilers: dict[str, Callable[[str, str], None]] = {
            "deployment": self._deployment,
            "replicaset": self._replicaset,
            "statefulset": self._statefulset,
            "daemonset": self._daemonset,
            "job": self._job,
            "pod": self._pod,
            "service": self._service,
            "endpoints": self._endpoints_for_namespace,
            "namespace": self._namespace,
            "gc": self._collect,
            "foreground": self._foreground,
            "claim": self._claim,
            "autoscaler": self._autoscaler,
            "aggregate": self._aggregate,
        }

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.store.add_listener(self._on_event)
        self._ensure_node()
        for sk, ns, name in list(self.cluster.store.all_locations()):
            obj = self.cluster.store.get(sk, ns, name)
            if obj is not None:
                self._on_event(StoredEvent(rv=0, type="ADDED", storage_key=sk, obj=obj))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="kubesim-controllers")

    async def stop(self) -> None:
        self.cluster.store.remove_listener(self._on_event)
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            try:
                self._reconcilers[key[0]](key[1], key[2])
            except ApiError as err:
                log.debug("reconcile_conflict", key=key, reason=err.reason, message=err.message)
            except Exception:
                log.exception("reconcile_failed", key=key)
            if self._queue.empty():
                await asyncio.sleep(0)

    # --- event routing --------------------------------------------------------------------

    def _on_event(self, event: StoredEvent) -> None:
        sk, obj = event.storage_key, event.obj
        md = obj["metadata"]
        ns, name = md.get("namespace", ""), md["name"]
        self._enqueue_deletion(event)
        if sk in _SCALED:
            self._enqueue_autoscalers(ns, name)
        if (what := _OWN_KEYS.get(sk)) is not None:
            self.enqueue((what, ns, name))
        if sk == REPLICASETS:
            self._enqueue_owner(controller_uid(obj), "deployment")
        elif sk == PODS:
            self._on_pod(event, ns, name)
        elif sk == rbac.CLUSTER_ROLES:
            for role in self.cluster.store.objects(rbac.CLUSTER_ROLES):
                if isinstance(role.get("aggregationRule"), dict):
                    self.enqueue(("aggregate", "", role["metadata"]["name"]))

    def _enqueue_deletion(self, event: StoredEvent) -> None:
        """A deleted object's dependents go to garbage collection; a foreground deletion waits
        for its dependents to go."""
        sk, md = event.storage_key, event.obj["metadata"]
        if event.type == "DELETED":
            if uid := md.get("uid"):
                self.enqueue(("gc", uid, ""))
        elif md.get("deletionTimestamp") and "foregroundDeletion" in (md.get("finalizers") or []):
            location = f"{md.get('namespace', '')}/{md['name']}"
            self.enqueue(("foreground", f"{sk[0]}/{sk[1]}", location))

    def _enqueue_autoscalers(self, ns: str, name: str) -> None:
        """Autoscalers follow their target's replicas."""
        for hpa in self.cluster.store.objects(HPAS, ns):
            if (hpa.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name:
                self.enqueue(("autoscaler", ns, hpa["metadata"]["name"]))

    def _on_pod(self, event: StoredEvent, ns: str, name: str) -> None:
        """A new pending pod starts after `ready_delay`; its owners and Endpoints follow it."""
        obj = event.obj
        if event.type == "ADDED" and obj.get("status", {}).get("phase") == "Pending":
            self._later(self.ready_delay, ("pod", ns, name))
        owner = controller_uid(obj)
        if owner is not None:
            for what in _POD_OWNERS:
                self._enqueue_owner(owner, what)
            # the deployment above a replica set reads its pods' progress too
            loc = self.cluster.store.by_uid(owner)
            if loc is not None and loc[0] == REPLICASETS:
                rs = self.cluster.store.get(*loc)
                if rs is not None:
                    self._enqueue_owner(controller_uid(rs), "deployment")
        self.enqueue(("endpoints", ns, ""))

    def _enqueue_owner(self, uid: str | None, what: str) -> None:
        """Queue the owner with `uid` for the `what` reconciler, when it is of that kind."""
        if uid is None:
            return
        loc = self.cluster.store.by_uid(uid)
        if loc is None:
            return
        sk, ns, name = loc
        if _OWN_KEYS.get(sk) == what:
            self.enqueue((what, ns, name))
