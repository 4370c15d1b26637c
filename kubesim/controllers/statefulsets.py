"""The stateful set controller: pods named by ordinal, each with its volume claims."""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    PODS,
    PVCS,
    STATEFULSETS,
    ControllerBase,
    pod_ready,
    template_hash,
)
from kubesim.objects import Obj, copy_json


class StatefulSetController(ControllerBase):
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
