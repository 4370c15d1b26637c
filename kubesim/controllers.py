"""kwok-style simulated controllers: workloads get pods and status, pods get ready.

One named task drains a queue of keys fed by store events. After `ready_delay` seconds a pod
is Running and Ready (or Succeeded, for jobs), unless it or its workload carries the
`kubesim.meshplane.io/fail` annotation, whose value becomes the waiting reason.
Namespaces terminate, owner references cascade and Endpoints follow Services and ready Pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from typing import Any

import structlog

from kubesim.cluster import NAMESPACES, Cluster, random_suffix
from kubesim.errors import ApiError
from kubesim.objects import Obj, copy_json, now_rfc3339
from kubesim.resources import ResourceType
from kubesim.selectors import Requirement, labels_match
from kubesim.store import StoredEvent

log = structlog.get_logger(__name__)

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
SERVICE_ACCOUNTS = ("", "serviceaccounts")

Key = tuple[str, str, str]  # (what, namespace or uid, name)


def _hash(value: Any) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[int(digest[i : i + 2], 16) % len(alphabet)] for i in range(0, 20, 2))


def _owner_ref(owner: Obj) -> dict[str, Any]:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _fail_reason(obj: Obj) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(FAIL_ANNOTATION)


def _pod_ready(pod: Obj) -> bool:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _condition(
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


class Simulator:
    """Owns the reconcile task; `start`/`stop` belong to the server's lifecycle."""

    def __init__(self, cluster: Cluster, *, ready_delay: float) -> None:
        self.cluster = cluster
        self.ready_delay = ready_delay
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._pod_ips = 2
        self._lb_ips = 10
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
        owner = _controller_uid(obj)
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
                        self._enqueue_owner(_controller_uid(rs), "deployment")
            self.enqueue(("endpoints", ns, ""))
        elif sk == SERVICES:
            self.enqueue(("service", ns, name))
        elif sk == NAMESPACES:
            self.enqueue(("namespace", "", name))

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
            if obj is not None and _controller_uid(obj) == uid:
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
        if (reason := _fail_reason(owner)) is not None:
            annotations[FAIL_ANNOTATION] = reason
        md: dict[str, Any] = {
            "name": name,
            "labels": labels,
            "ownerReferences": [_owner_ref(owner)],
        }
        if annotations:
            md["annotations"] = annotations
        spec = template.get("spec") or {}
        spec["nodeName"] = NODE_NAME
        spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
        return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}

    def _ensure_node(self) -> None:
        if self._get(NODES, "", NODE_NAME) is not None:
            return
        node = {
            "metadata": {
                "name": NODE_NAME,
                "labels": {
                    "kubernetes.io/hostname": NODE_NAME,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                },
            },
            "spec": {"podCIDR": "10.244.0.0/16"},
        }
        created = self._create(NODES, "", node)
        if created is not None:
            now = now_rfc3339()
            self._set_status(
                NODES,
                created,
                {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "True",
                            "reason": "KubeletReady",
                            "message": "kubesim node is ready",
                            "lastHeartbeatTime": now,
                            "lastTransitionTime": now,
                        }
                    ],
                    "addresses": [
                        {"type": "InternalIP", "address": NODE_IP},
                        {"type": "Hostname", "address": NODE_NAME},
                    ],
                    "capacity": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
                    "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "1000"},
                    "nodeInfo": {
                        "kubeletVersion": "v1.34.0-kubesim",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "containerRuntimeVersion": "kubesim://1",
                    },
                },
            )

    # --- pods -----------------------------------------------------------------------------

    def _pod(self, ns: str, name: str) -> None:
        pod = self._get(PODS, ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            return
        now = now_rfc3339()
        containers = pod.get("spec", {}).get("containers") or []
        reason = _fail_reason(pod)
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}
        base = {**status, "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}], "startTime": now}
        if reason is not None:
            new_status = {
                **base,
                "phase": "Pending",
                "conditions": [
                    scheduled,
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "ContainersReady",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "lastTransitionTime": now,
                    },
                ],
                "containerStatuses": [
                    {
                        "name": c.get("name"),
                        "image": c.get("image"),
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "waiting": {"reason": reason, "message": f"kubesim: simulated {reason}"}
                        },
                    }
                    for c in containers
                ],
            }
            self._set_status(PODS, pod, new_status)
            return
        ip = f"10.244.{(self._pod_ips // 250) % 250}.{self._pod_ips % 250 + 2}"
        self._pod_ips += 1
        finishes = pod.get("spec", {}).get("restartPolicy") in ("Never", "OnFailure")
        if finishes:
            phase, ready = "Succeeded", False
            state: dict[str, Any] = {
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": now,
                    "finishedAt": now,
                }
            }
        else:
            phase, ready = "Running", True
            state = {"running": {"startedAt": now}}
        cond_status = "True" if ready else "False"
        new_status = {
            **base,
            "phase": phase,
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [
                {
                    "type": "PodReadyToStartContainers",
                    "status": cond_status,
                    "lastTransitionTime": now,
                },
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {
                    "type": "Ready",
                    "status": cond_status,
                    "lastTransitionTime": now,
                    **({} if ready else {"reason": "PodCompleted"}),
                },
                {
                    "type": "ContainersReady",
                    "status": cond_status,
                    "lastTransitionTime": now,
                    **({} if ready else {"reason": "PodCompleted"}),
                },
                scheduled,
            ],
            "containerStatuses": [
                {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "imageID": f"docker.io/{c.get('image')}",
                    "containerID": f"kubesim://{_hash(c)}",
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state,
                }
                for c in containers
            ],
        }
        self._set_status(PODS, pod, new_status)

    # --- deployments and replica sets -----------------------------------------------------

    def _deployment(self, ns: str, name: str) -> None:
        deploy = self._get(DEPLOYMENTS, ns, name)
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return
        spec = deploy["spec"]
        desired = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        pod_hash = _hash(template)
        owned = self._owned(REPLICASETS, deploy)
        current = next(
            (
                rs
                for rs in owned
                if (rs["metadata"].get("labels") or {}).get("pod-template-hash") == pod_hash
            ),
            None,
        )
        revisions = [
            int(
                (rs["metadata"].get("annotations") or {}).get(
                    "deployment.kubernetes.io/revision", "0"
                )
            )
            for rs in owned
        ]
        fail = _fail_reason(deploy)
        if current is None:
            rs_template = copy_json(template)
            rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = (
                pod_hash
            )
            selector = copy_json(spec.get("selector") or {})
            selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
            annotations = {
                "deployment.kubernetes.io/revision": str(max(revisions, default=0) + 1),
                "deployment.kubernetes.io/desired-replicas": str(desired),
            }
            if fail is not None:
                annotations[FAIL_ANNOTATION] = fail
            rs = {
                "metadata": {
                    "name": f"{name}-{pod_hash}",
                    "labels": dict(rs_template["metadata"]["labels"]),
                    "annotations": annotations,
                    "ownerReferences": [_owner_ref(deploy)],
                },
                "spec": {"replicas": desired, "selector": selector, "template": rs_template},
            }
            current = self._create(REPLICASETS, ns, rs)
            if current is None:
                return
        elif current["spec"].get("replicas") != desired or _fail_reason(current) != fail:
            new = copy_json(current)
            new["spec"]["replicas"] = desired
            annotations = new["metadata"].setdefault("annotations", {})
            if fail is None:
                annotations.pop(FAIL_ANNOTATION, None)
            else:
                annotations[FAIL_ANNOTATION] = fail
            current = self.cluster.write(self._type(REPLICASETS), current, new)
        for rs in owned:
            if rs["metadata"]["uid"] != current["metadata"]["uid"] and rs["spec"].get("replicas"):
                new = copy_json(rs)
                new["spec"]["replicas"] = 0
                self.cluster.write(self._type(REPLICASETS), rs, new)
        owned = self._owned(REPLICASETS, deploy)
        self._deployment_status(deploy, current, owned, desired, fail)

    def _deployment_status(
        self, deploy: Obj, current: Obj, owned: list[Obj], desired: int, fail: str | None
    ) -> None:
        cur_status = current.get("status") or {}
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
        available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in owned)
        updated = int(cur_status.get("replicas", 0))
        previous = (deploy.get("status") or {}).get("conditions") or []
        rs_name = current["metadata"]["name"]
        complete = updated == desired and available >= desired and total == updated
        if fail is not None and total >= desired and self._pods_settled(current):
            progressing = _condition(
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                previous,
            )
        elif complete:
            progressing = _condition(
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                previous,
            )
        else:
            progressing = _condition(
                "Progressing",
                True,
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                previous,
            )
        available_ok = available >= desired
        available_cond = _condition(
            "Available",
            available_ok,
            "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
            "Deployment has minimum availability."
            if available_ok
            else "Deployment does not have minimum availability.",
            previous,
        )
        status: dict[str, Any] = {"observedGeneration": deploy["metadata"].get("generation", 1)}
        if total:
            status["replicas"] = total
        if updated:
            status["updatedReplicas"] = updated
        if ready:
            status["readyReplicas"] = ready
        if available:
            status["availableReplicas"] = available
        if desired - available > 0:
            status["unavailableReplicas"] = desired - available
        status["conditions"] = [available_cond, progressing]
        self._set_status(DEPLOYMENTS, deploy, status)

    def _pods_settled(self, owner: Obj) -> bool:
        """Every pod of `owner` has been looked at by the simulated kubelet."""
        return all((p.get("status") or {}).get("startTime") for p in self._owned(PODS, owner))

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

    def _replicaset(self, ns: str, name: str) -> None:
        rs = self._get(REPLICASETS, ns, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        desired = int(rs["spec"].get("replicas", 1))
        pods = self._scale_pods(rs, desired, lambda _: f"{name}-{random_suffix()}", {})
        ready = sum(1 for p in pods if _pod_ready(p))
        status: dict[str, Any] = {
            "replicas": len(pods),
            "fullyLabeledReplicas": len(pods),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if ready:
            status["readyReplicas"] = ready
            status["availableReplicas"] = ready
        self._set_status(REPLICASETS, rs, status)

    # --- stateful sets, daemon sets, jobs -------------------------------------------------

    def _statefulset(self, ns: str, name: str) -> None:
        sts = self._get(STATEFULSETS, ns, name)
        if sts is None or sts["metadata"].get("deletionTimestamp"):
            return
        desired = int(sts["spec"].get("replicas", 1))
        revision = f"{name}-{_hash(sts['spec'].get('template'))}"
        for pod in self._owned(PODS, sts):
            if (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != revision:
                self._delete(PODS, pod)
        wanted = {f"{name}-{i}" for i in range(desired)}
        pods = []
        for pod in self._owned(PODS, sts):
            if pod["metadata"]["name"] not in wanted:
                self._delete(PODS, pod)
            elif not pod["metadata"].get("deletionTimestamp"):
                pods.append(pod)
        have = {p["metadata"]["name"] for p in pods}
        for i in range(desired):
            pod_name = f"{name}-{i}"
            if pod_name in have:
                continue
            pod = self._new_pod(
                sts,
                pod_name,
                {
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(i),
                },
            )
            pod["spec"].setdefault("hostname", pod_name)
            if sts["spec"].get("serviceName"):
                pod["spec"].setdefault("subdomain", sts["spec"]["serviceName"])
            if (created := self._create(PODS, ns, pod)) is not None:
                pods.append(created)
        ready = sum(1 for p in pods if _pod_ready(p))
        status: dict[str, Any] = {
            "observedGeneration": sts["metadata"].get("generation", 1),
            "replicas": len(pods),
            "currentReplicas": len(pods),
            "updatedReplicas": len(pods),
            "currentRevision": revision,
            "updateRevision": revision,
            "collisionCount": 0,
            "availableReplicas": ready,
        }
        if ready:
            status["readyReplicas"] = ready
        self._set_status(STATEFULSETS, sts, status)

    def _daemonset(self, ns: str, name: str) -> None:
        ds = self._get(DAEMONSETS, ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        revision = _hash(ds["spec"].get("template"))
        for pod in self._owned(PODS, ds):
            if (pod["metadata"].get("labels") or {}).get("controller-revision-hash") != revision:
                self._delete(PODS, pod)
        pods = self._scale_pods(
            ds,
            1,
            lambda _: f"{name}-{random_suffix()}",
            {
                "controller-revision-hash": revision,
                "pod-template-generation": str(ds["metadata"].get("generation", 1)),
            },
        )
        ready = sum(1 for p in pods if _pod_ready(p))
        self._set_status(
            DAEMONSETS,
            ds,
            {
                "observedGeneration": ds["metadata"].get("generation", 1),
                "desiredNumberScheduled": 1,
                "currentNumberScheduled": len(pods),
                "updatedNumberScheduled": len(pods),
                "numberMisscheduled": 0,
                "numberReady": ready,
                "numberAvailable": ready,
                **({"numberUnavailable": 1 - ready} if ready < 1 else {}),
            },
        )

    def _job(self, ns: str, name: str) -> None:
        job = self._get(JOBS, ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec = job["spec"]
        status = dict(job.get("status") or {})
        if any(c.get("type") == "Complete" for c in status.get("conditions") or []):
            return
        completions = int(spec.get("completions") or 1)
        parallelism = int(spec.get("parallelism") or 1)
        pods = self._owned(PODS, job)
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        active = [p for p in pods if (p.get("status") or {}).get("phase") in ("Pending", "Running")]
        uid = job["metadata"]["uid"]
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "job-name": name,
        }
        if not spec.get("suspend"):
            for _ in range(min(parallelism, completions - succeeded) - len(active)):
                created = self._create(
                    PODS, ns, self._new_pod(job, f"{name}-{random_suffix()}", labels)
                )
                if created is not None:
                    active.append(created)
        now = now_rfc3339()
        new_status: dict[str, Any] = {
            **status,
            "startTime": status.get("startTime", now),
            "uncountedTerminatedPods": {},
        }
        new_status["active"] = len(active)
        new_status["ready"] = sum(1 for p in active if _pod_ready(p))
        if succeeded:
            new_status["succeeded"] = succeeded
        if succeeded >= completions:
            new_status["active"] = 0
            new_status["completionTime"] = now
            new_status["conditions"] = [
                {
                    "type": "SuccessCriteriaMet",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
                {
                    "type": "Complete",
                    "status": "True",
                    "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": now,
                    "lastTransitionTime": now,
                },
            ]
        if new_status.get("active") == 0:
            new_status.pop("active")
        self._set_status(JOBS, job, new_status)

    # --- services and endpoints -----------------------------------------------------------

    def _service(self, ns: str, name: str) -> None:
        svc = self._get(SERVICES, ns, name)
        if svc is None:
            for sk in (ENDPOINTS,):
                if (ep := self._get(sk, ns, name)) is not None:
                    self._delete(sk, ep)
            return
        if svc["spec"].get("type") == "LoadBalancer" and not (svc.get("status") or {}).get(
            "loadBalancer", {}
        ).get("ingress"):
            ip = f"{LB_PREFIX}{self._lb_ips}"
            self._lb_ips = self._lb_ips + 1 if self._lb_ips < 250 else 10
            self._set_status(
                SERVICES, svc, {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}
            )
        self._endpoints(svc)

    def _endpoints_for_namespace(self, ns: str, _: str) -> None:
        for svc in self.cluster.store.objects(SERVICES, ns):
            self._endpoints(svc)

    def _endpoints(self, svc: Obj) -> None:
        selector = svc["spec"].get("selector")
        if not selector or svc["spec"].get("type") == "ExternalName":
            return
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        reqs: list[Requirement] = [
            Requirement(key=k, op="=", values=(str(v),)) for k, v in selector.items()
        ]
        pods = [
            p
            for p in self.cluster.store.objects(PODS, ns)
            if labels_match(reqs, p["metadata"].get("labels") or {})
            and (p.get("status") or {}).get("podIP")
            and not p["metadata"].get("deletionTimestamp")
        ]
        pods.sort(key=lambda p: p["metadata"]["name"])
        ports = [self._endpoint_port(port, pods) for port in svc["spec"].get("ports") or []]
        ready = [p for p in pods if _pod_ready(p)]
        not_ready = [p for p in pods if not _pod_ready(p)]

        def address(pod: Obj) -> dict[str, Any]:
            return {
                "ip": pod["status"]["podIP"],
                "nodeName": NODE_NAME,
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            }

        subset: dict[str, Any] = {}
        if ready:
            subset["addresses"] = [address(p) for p in ready]
        if not_ready:
            subset["notReadyAddresses"] = [address(p) for p in not_ready]
        if subset and ports:
            subset["ports"] = [
                {k: v for k, v in p.items() if k != "appProtocol" or v} for p in ports
            ]
        labels = dict(svc["metadata"].get("labels") or {})
        endpoints: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
        }
        if subset:
            endpoints["subsets"] = [subset]
        self._upsert(ENDPOINTS, ns, name, endpoints)
        slice_labels = {
            **labels,
            "kubernetes.io/service-name": name,
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
        }
        slice_name = f"{name}-{_hash(svc['metadata']['uid'])[:5]}"
        endpoint_slice: Obj = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name,
                "namespace": ns,
                "labels": slice_labels,
                "ownerReferences": [_owner_ref(svc)],
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [p["status"]["podIP"]],
                    "conditions": {
                        "ready": _pod_ready(p),
                        "serving": _pod_ready(p),
                        "terminating": False,
                    },
                    "nodeName": NODE_NAME,
                    "targetRef": {
                        "kind": "Pod",
                        "namespace": ns,
                        "name": p["metadata"]["name"],
                        "uid": p["metadata"]["uid"],
                    },
                }
                for p in pods
            ],
            "ports": ports,
        }
        self._upsert(SLICES, ns, slice_name, endpoint_slice)

    @staticmethod
    def _endpoint_port(port: dict[str, Any], pods: list[Obj]) -> dict[str, Any]:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str):
            resolved = None
            for pod in pods:
                for container in pod.get("spec", {}).get("containers") or []:
                    for cport in container.get("ports") or []:
                        if cport.get("name") == target:
                            resolved = cport.get("containerPort")
            target = resolved if resolved is not None else port.get("port")
        out = {"port": target, "protocol": port.get("protocol", "TCP")}
        if port.get("name"):
            out["name"] = port["name"]
        if port.get("appProtocol"):
            out["appProtocol"] = port["appProtocol"]
        return out

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

    # --- namespaces and garbage collection ------------------------------------------------

    def _namespace(self, _: str, name: str) -> None:
        ns_obj = self._get(NAMESPACES, "", name)
        if ns_obj is None:
            return
        if not ns_obj["metadata"].get("deletionTimestamp"):
            if self._get(SERVICE_ACCOUNTS, name, "default") is None:
                self._create(SERVICE_ACCOUNTS, name, {"metadata": {"name": "default"}})
            return
        remaining = 0
        for rt in list(self.cluster.registry):
            if not rt.namespaced or rt.version != self._type(rt.storage_key).version:
                continue
            for obj in self.cluster.store.objects(rt.storage_key, name):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(rt.storage_key, obj)
        still = sum(
            len(self.cluster.store.objects(sk, name)) for sk in self.cluster.store.storage_keys()
        )
        if still:
            if remaining:
                self._later(0.05, ("namespace", "", name))
            return
        if ns_obj["metadata"].get("finalizers"):
            return
        self.cluster.remove_now(self._type(NAMESPACES), ns_obj)

    def _collect(self, owner_uid: str, _: str) -> None:
        """Background cascade: delete dependents whose owners are all gone."""
        store = self.cluster.store
        for sk, ns, name in store.dependents(owner_uid):
            obj = store.get(sk, ns, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            owners = [r.get("uid") for r in obj["metadata"].get("ownerReferences") or []]
            if all(store.by_uid(uid) is None for uid in owners if uid):
                self._delete(sk, obj)

    def _foreground(self, sk_text: str, loc: str) -> None:
        group, _, plural = sk_text.partition("/")
        ns, _, name = loc.partition("/")
        sk = (group, plural)
        obj = self._get(sk, ns, name)
        if obj is None:
            return
        deps = self.cluster.store.dependents(obj["metadata"]["uid"])
        for dsk, dns, dname in deps:
            dep = self._get(dsk, dns, dname)
            if dep is not None and not dep["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(ApiError):
                    self.cluster.delete(self._type(dsk), dns, dname, propagation="Foreground")
        if deps:
            self._later(0.05, ("foreground", sk_text, loc))
            return
        new = copy_json(obj)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != "foregroundDeletion"
        ]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self.cluster.write(self._type(sk), obj, new)
