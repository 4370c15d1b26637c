"""The simulated kubelet: its node, and pods started (or held waiting with a simulated failure).

A pod becomes Running and Ready (Succeeded, when its restart policy says it finishes) unless it
carries the `kubesim.meshplane.io/fail` annotation, whose value becomes the waiting reason.
"""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    EVENTS,
    NODE_IP,
    NODE_NAME,
    NODES,
    PODS,
    ControllerBase,
    fail_reason,
    template_hash,
)
from kubesim.objects import Obj, now_rfc3339


class Kubelet(ControllerBase):
    def _warn(self, pod: Obj, reason: str, message: str) -> None:
        """A Warning Event about a pod, as the kubelet records when a container cannot start."""
        md = pod["metadata"]
        now = now_rfc3339()
        self._create(
            EVENTS,
            md["namespace"],
            {
                "metadata": {"generateName": f"{md['name']}."},
                "involvedObject": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "namespace": md["namespace"],
                    "name": md["name"],
                    "uid": md["uid"],
                },
                "type": "Warning",
                "reason": reason,
                "message": message,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "kubelet", "host": NODE_NAME},
                "reportingComponent": "kubelet",
                "reportingInstance": NODE_NAME,
            },
        )

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
                    # every field a kubelet reports (clients' models require them all)
                    "nodeInfo": {
                        "machineID": "kubesim",
                        "systemUUID": "kubesim",
                        "bootID": "kubesim",
                        "kernelVersion": "kubesim",
                        "osImage": "kubesim",
                        "kubeletVersion": "v1.34.0-kubesim",
                        "kubeProxyVersion": "",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "containerRuntimeVersion": "kubesim://1",
                    },
                },
            )

    def _pod(self, ns: str, name: str) -> None:
        pod = self._get(PODS, ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            return
        now = now_rfc3339()
        base = {**status, "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}], "startTime": now}
        reason = fail_reason(pod)
        if reason is not None:
            self._set_status(PODS, pod, _waiting_status(pod, base, reason, now))
            self._warn(pod, reason, f"kubesim: simulated {reason}")
            return
        ip = f"10.244.{(self._pod_ips // 250) % 250}.{self._pod_ips % 250 + 2}"
        self._pod_ips += 1
        self._set_status(PODS, pod, _started_status(pod, base, ip, now))


def _scheduled(now: str) -> dict[str, Any]:
    return {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}


def _containers(pod: Obj) -> list[dict[str, Any]]:
    return pod.get("spec", {}).get("containers") or []


def _waiting_status(pod: Obj, base: dict[str, Any], reason: str, now: str) -> dict[str, Any]:
    """A pod whose containers wait with the simulated failure's reason."""
    return {
        **base,
        "phase": "Pending",
        "conditions": [
            _scheduled(now),
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
                "state": {"waiting": {"reason": reason, "message": f"kubesim: simulated {reason}"}},
            }
            for c in _containers(pod)
        ],
    }


def _started_status(pod: Obj, base: dict[str, Any], ip: str, now: str) -> dict[str, Any]:
    """A pod whose containers run (or, for a pod that finishes, have completed)."""
    finishes = pod.get("spec", {}).get("restartPolicy") in ("Never", "OnFailure")
    state: dict[str, Any]
    if finishes:
        phase, ready = "Succeeded", False
        state = {
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
    return {
        **base,
        "phase": phase,
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": _started_conditions(ready=ready, now=now),
        "containerStatuses": [
            {
                "name": c.get("name"),
                "image": c.get("image"),
                "imageID": f"docker.io/{c.get('image')}",
                "containerID": f"kubesim://{template_hash(c)}",
                "ready": ready,
                "started": ready,
                "restartCount": 0,
                "state": state,
            }
            for c in _containers(pod)
        ],
    }


def _started_conditions(*, ready: bool, now: str) -> list[dict[str, Any]]:
    cond_status = "True" if ready else "False"
    completed = {} if ready else {"reason": "PodCompleted"}
    return [
        {"type": "PodReadyToStartContainers", "status": cond_status, "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastTransitionTime": now},
        {"type": "Ready", "status": cond_status, "lastTransitionTime": now, **completed},
        {"type": "ContainersReady", "status": cond_status, "lastTransitionTime": now, **completed},
        _scheduled(now),
    ]
