"""kwok-style simulated controllers: workloads get pods and status, pods get ready.

One named task drains a queue of keys fed by store events. After `ready_delay` seconds a pod
is Running and Ready (or Succeeded, for jobs), unless it or its workload carries the
`kubesim.meshplane.io/fail` annotation, whose value becomes the waiting reason.
Namespaces terminate, owner references cascade and Endpoints follow Services and ready Pods.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from kubesim import rbac
from kubesim.cluster import NAMESPACES, Cluster
from kubesim.collection import LifecycleControllers
from kubesim.endpoints import ServiceControllers
from kubesim.errors import ApiError
from kubesim.objects import copy_json
from kubesim.reconciling import (
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
from kubesim.store import StoredEvent
from kubesim.volumes import VolumeControllers
from kubesim.workloads import WorkloadControllers

log = structlog.get_logger(__name__)

__all__ = ["FAIL_ANNOTATION", "Simulator"]


class Simulator(WorkloadControllers, ServiceControllers, LifecycleControllers, VolumeControllers):
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
        if event.type == "DELETED":
            if uid := md.get("uid"):
                self.enqueue(("gc", uid, ""))
        elif md.get("deletionTimestamp") and "foregroundDeletion" in (md.get("finalizers") or []):
            self.enqueue(("foreground", f"{sk[0]}/{sk[1]}", f"{ns}/{name}"))
        owner = controller_uid(obj)
        if sk in (DEPLOYMENTS, STATEFULSETS, REPLICASETS):
            # autoscalers follow their target's replicas
            for hpa in self.cluster.store.objects(HPAS, ns):
                if (hpa.get("spec") or {}).get("scaleTargetRef", {}).get("name") == name:
                    self.enqueue(("autoscaler", ns, hpa["metadata"]["name"]))
        if sk == DEPLOYMENTS:
            self.enqueue(("deployment", ns, name))
        elif sk == REPLICASETS:
            self.enqueue(("replicaset", ns, name))
            self._enqueue_owner(owner, "deployment")
        elif sk == STATEFULSETS:
            self.enqueue(("statefulset", ns, name))
        elif sk == DAEMONSETS:
            self.enqueue(("daemonset", ns, name))
        elif sk == JOBS:
            self.enqueue(("job", ns, name))
        elif sk == PODS:
            if event.type == "ADDED" and obj.get("status", {}).get("phase") == "Pending":
                self._later(self.ready_delay, ("pod", ns, name))
            if owner is not None:
                for what in ("replicaset", "statefulset", "daemonset", "job"):
                    self._enqueue_owner(owner, what)
                # the deployment above a replica set reads its pods' progress too
                loc = self.cluster.store.by_uid(owner)
                if loc is not None and loc[0] == REPLICASETS:
                    rs = self.cluster.store.get(*loc)
                    if rs is not None:
                        self._enqueue_owner(controller_uid(rs), "deployment")
            self.enqueue(("endpoints", ns, ""))
        elif sk == SERVICES:
            self.enqueue(("service", ns, name))
        elif sk == NAMESPACES:
            self.enqueue(("namespace", "", name))
        elif sk == PVCS:
            self.enqueue(("claim", ns, name))
        elif sk == HPAS:
            self.enqueue(("autoscaler", ns, name))
        elif sk == rbac.CLUSTER_ROLES:
            for role in self.cluster.store.objects(rbac.CLUSTER_ROLES):
                if isinstance(role.get("aggregationRule"), dict):
                    self.enqueue(("aggregate", "", role["metadata"]["name"]))

    def _aggregate(self, _: str, name: str) -> None:
        """The ClusterRole aggregation controller: an aggregated role's `rules` are those of
        the ClusterRoles its `aggregationRule` selects."""
        store = self.cluster.store
        role = store.get(rbac.CLUSTER_ROLES, "", name)
        rt = self.cluster.type_of(rbac.CLUSTER_ROLES)
        if role is None or rt is None or not isinstance(role.get("aggregationRule"), dict):
            return
        rules = rbac.aggregated_rules(store, role)
        if (role.get("rules") or []) == rules:
            return
        new = copy_json(role)
        new["rules"] = rules
        self.cluster.write(rt, role, new)

    def _enqueue_owner(self, uid: str | None, what: str) -> None:
        if uid is None:
            return
        loc = self.cluster.store.by_uid(uid)
        if loc is None:
            return
        sk, ns, name = loc
        wanted = {
            "deployment": DEPLOYMENTS,
            "replicaset": REPLICASETS,
            "statefulset": STATEFULSETS,
            "daemonset": DAEMONSETS,
            "job": JOBS,
        }[what]
        if sk == wanted:
            self.enqueue((what, ns, name))
