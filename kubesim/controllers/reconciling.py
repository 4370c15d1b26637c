"""What every simulated controller shares: the work queue, timers and object helpers.

Reconcilers are methods of mixins over `ControllerBase`, one module per kind (`kubelet`,
`deployments`, `jobs`, `endpoints`, ...); `simulator.Simulator` combines them and routes store
events to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

from kubesim.cluster import Cluster
from kubesim.errors import ApiError
from kubesim.objects import Obj, copy_json, now_rfc3339
from kubesim.resources import ResourceType

FAIL_ANNOTATION = "kubesim.meshplane.io/fail"
NODE_NAME = "kubesim-node"
NODE_IP = "192.0.2.10"
LB_PREFIX = "198.51.100."

DEPLOYMENTS = ("apps", "deployments")
REPLICASETS = ("apps", "replicasets")
STATEFULSETS = ("apps", "statefulsets")
DAEMONSETS = ("apps", "daemonsets")
JOBS = ("batch", "jobs")
PODS = ("", "pods")
SERVICES = ("", "services")
ENDPOINTS = ("", "endpoints")
SLICES = ("discovery.k8s.io", "endpointslices")
NODES = ("", "nodes")
EVENTS = ("", "events")
PVCS = ("", "persistentvolumeclaims")
HPAS = ("autoscaling", "horizontalpodautoscalers")
SERVICE_ACCOUNTS = ("", "serviceaccounts")

Key = tuple[str, str, str]  # (what, namespace or uid, name)


def template_hash(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def owner_ref(owner: Obj) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def fail_reason(obj: Obj) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(FAIL_ANNOTATION)


def pod_ready(pod: Obj) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def condition(
    kind: str,
    status: bool,
    reason: str = "",
    message: str = "",
    previous: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    now = now_rfc3339()
    text = "True" if status else "False"
    old = next((c for c in previous or [] if c.get("type") == kind), None)
    since = old["lastTransitionTime"] if old and old.get("status") == text else now
    cond = {"type": kind, "status": text, "lastTransitionTime": since}
    if "lastUpdateTime" in (old or {}) or kind in ("Available", "Progressing"):
        cond["lastUpdateTime"] = (
            old.get("lastUpdateTime", now)
            if old and old.get("status") == text and old.get("reason") == reason
            else now
        )
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


class ControllerBase:
    """State and helpers the reconcilers share; one instance runs on the server's loop."""

    def __init__(self, cluster: Cluster, *, ready_delay: float) -> None:
        self.cluster = cluster
        self.ready_delay = ready_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._pod_ips = 2
        self._lb_ips = 10

    def enqueue(self, key: Key) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _later(self, delay: float, key: Key) -> None:
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.enqueue(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    # --- helpers --------------------------------------------------------------------------

    def _type(self, sk: tuple[str, str]) -> ResourceType:
        rt = self.cluster.type_of(sk)
        assert rt is not None, sk
        return rt

    def _get(self, sk: tuple[str, str], ns: str, name: str) -> Obj | None:
        return self.cluster.store.get(sk, ns, name)

    def _owned(self, sk: tuple[str, str], owner: Obj) -> list[Obj]:
        uid = owner["metadata"]["uid"]
        out = []
        for dsk, ns, name in self.cluster.store.dependents(uid):
            if dsk != sk:
                continue
            obj = self.cluster.store.get(dsk, ns, name)
            if obj is not None and controller_uid(obj) == uid:
                out.append(obj)
        out.sort(key=lambda o: o["metadata"]["creationTimestamp"] + o["metadata"]["name"])
        return out

    def _set_status(self, sk: tuple[str, str], obj: Obj, status: dict[str, Any]) -> None:
        current = self._get(sk, obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if current is not None:
            self.cluster.write_status(self._type(sk), current, status)

    def _create(self, sk: tuple[str, str], ns: str, obj: Obj) -> Obj | None:
        try:
            return self.cluster.create(self._type(sk), ns, obj)
        except ApiError as err:
            if err.reason in ("AlreadyExists", "Forbidden", "NotFound"):
                return None
            raise

    def _delete(self, sk: tuple[str, str], obj: Obj) -> None:
        md = obj["metadata"]
        with contextlib.suppress(ApiError):
            self.cluster.delete(
                self._type(sk), md.get("namespace", ""), md["name"], propagation="Background"
            )

    def _new_pod(self, owner: Obj, name: str, extra_labels: dict[str, str]) -> Obj:
        template = copy_json(owner["spec"].get("template") or {})
        tmd = template.get("metadata") or {}
        labels = {**(tmd.get("labels") or {}), **extra_labels}
        annotations = dict(tmd.get("annotations") or {})
        if (reason := fail_reason(owner)) is not None:
            annotations[FAIL_ANNOTATION] = reason
        md: dict[str, Any] = {
            "name": name,
            "labels": labels,
            "ownerReferences": [owner_ref(owner)],
        }
        if annotations:
            md["annotations"] = annotations
        spec = template.get("spec") or {}
        spec["nodeName"] = NODE_NAME
        spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}

    def _scale_pods(
        self, owner: Obj, desired: int, name_for: Callable[[int], str], extra_labels: dict[str, str]
    ) -> list[Obj]:
        ns = owner["metadata"]["namespace"]
        pods = [p for p in self._owned(PODS, owner) if not p["metadata"].get("deletionTimestamp")]
        for i in range(len(pods), desired):
            created = self._create(PODS, ns, self._new_pod(owner, name_for(i), extra_labels))
            if created is not None:
                pods.append(created)
        for pod in pods[desired:]:
            self._delete(PODS, pod)
        return pods[:desired]

    def _upsert(self, sk: tuple[str, str], ns: str, name: str, obj: Obj) -> None:
        current = self._get(sk, ns, name)
        rt = self._type(sk)
        if current is None:
            self._create(sk, ns, obj)
            return
        new = {**copy_json(current), **{k: v for k, v in obj.items() if k != "metadata"}}
        new["metadata"] = {**current["metadata"], "labels": obj["metadata"].get("labels", {})}
        for key in ("subsets", "endpoints"):
            if key not in obj:
                new.pop(key, None)
        self.cluster.write(rt, current, new)
