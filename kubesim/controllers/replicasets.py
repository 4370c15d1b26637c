"""The replica set controller: the replicas wanted, as pods, and their count in its status."""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    REPLICASETS,
    ControllerBase,
    pod_ready,
)
from kubesim.objects import random_suffix


class ReplicaSetController(ControllerBase):
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
