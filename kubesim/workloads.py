"""Simulated workload controllers and kubelet: pods, deployments, replica sets, stateful sets,
daemon sets and jobs get pods and the status `kubectl rollout status` reads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesim.cluster import random_suffix
from kubesim.objects import Obj, copy_json, now_rfc3339
from kubesim.reconciling import (
    DAEMONSETS,
    DEPLOYMENTS,
    EVENTS,
    FAIL_ANNOTATION,
    HPAS,
    JOBS,
    NODE_IP,
    NODE_NAME,
    NODES,
    PODS,
    PVCS,
    REPLICASETS,
    STATEFULSETS,
    ControllerBase,
    condition,
    fail_reason,
    owner_ref,
    pod_ready,
    template_hash,
)


class WorkloadControllers(ControllerBase):
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
        reason = fail_reason(pod)
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
            self._warn(pod, reason, f"kubesim: simulated {reason}")
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
                    "containerID": f"kubesim://{template_hash(c)}",
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
        pod_hash = template_hash(template)
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
        fail = fail_reason(deploy)
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
                    "ownerReferences": [owner_ref(deploy)],
                },
                "spec": {"replicas": desired, "selector": selector, "template": rs_template},
            }
            current = self._create(REPLICASETS, ns, rs)
            if current is None:
                return
        elif current["spec"].get("replicas") != desired or fail_reason(current) != fail:
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
            progressing = condition(
                "Progressing",
                False,
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{rs_name}" has timed out progressing.',
                previous,
            )
        elif complete:
            progressing = condition(
                "Progressing",
                True,
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
                previous,
            )
        else:
            progressing = condition(
                "Progressing",
                True,
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
                previous,
            )
        available_ok = available >= desired
        available_cond = condition(
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
        ready = sum(1 for p in pods if pod_ready(p))
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
        revision = f"{name}-{template_hash(sts['spec'].get('template'))}"
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
            self._claims_for(sts, i)
            pod["spec"].setdefault("hostname", pod_name)
            if sts["spec"].get("serviceName"):
                pod["spec"].setdefault("subdomain", sts["spec"]["serviceName"])
            if (created := self._create(PODS, ns, pod)) is not None:
                pods.append(created)
        ready = sum(1 for p in pods if pod_ready(p))
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

    def _claims_for(self, sts: Obj, ordinal: int) -> None:
        """The claims of one stateful pod, from `volumeClaimTemplates` (kept after the pod)."""
        md = sts["metadata"]
        selector = (sts["spec"].get("selector") or {}).get("matchLabels") or {}
        for template in sts["spec"].get("volumeClaimTemplates") or []:
            tmd = template.get("metadata") or {}
            claim_name = f"{tmd.get('name', 'data')}-{md['name']}-{ordinal}"
            if self._get(PVCS, md["namespace"], claim_name) is None:
                self._create(
                    PVCS,
                    md["namespace"],
                    {
                        "metadata": {
                            "name": claim_name,
                            "labels": {**(tmd.get("labels") or {}), **selector},
                        },
                        "spec": copy_json(template.get("spec") or {}),
                    },
                )

    def _autoscaler(self, ns: str, name: str) -> None:
        """HorizontalPodAutoscaler status: the target's replicas, within min and max."""
        hpa = self._get(HPAS, ns, name)
        if hpa is None:
            return
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        kinds = {"Deployment": DEPLOYMENTS, "StatefulSet": STATEFULSETS, "ReplicaSet": REPLICASETS}
        target = self._get(kinds.get(ref.get("kind", ""), DEPLOYMENTS), ns, ref.get("name", ""))
        current = int(((target or {}).get("spec") or {}).get("replicas", 0))
        low, high = int(spec.get("minReplicas", 1)), int(spec.get("maxReplicas", 1))
        able = target is not None
        previous = (hpa.get("status") or {}).get("conditions") or []
        self._set_status(
            HPAS,
            hpa,
            {
                "currentReplicas": current,
                "desiredReplicas": max(low, min(high, current)) if able else 0,
                "conditions": [
                    condition(
                        "AbleToScale",
                        able,
                        "SucceededGetScale" if able else "FailedGetScale",
                        "",
                        previous,
                    ),
                    condition(
                        "ScalingActive",
                        False,
                        "FailedGetResourceMetric",
                        "kubesim: no metrics",
                        previous,
                    ),
                ],
            },
        )

    def _daemonset(self, ns: str, name: str) -> None:
        ds = self._get(DAEMONSETS, ns, name)
        if ds is None or ds["metadata"].get("deletionTimestamp"):
            return
        revision = template_hash(ds["spec"].get("template"))
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
        ready = sum(1 for p in pods if pod_ready(p))
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
        new_status["ready"] = sum(1 for p in active if pod_ready(p))
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
