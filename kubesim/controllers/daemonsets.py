"""The daemon set controller: one pod on the one node, replaced when the template changes."""

from __future__ import annotations

from kubesim.controllers.reconciling import (
    DAEMONSETS,
    PODS,
    ControllerBase,
    pod_ready,
    template_hash,
)
from kubesim.objects import random_suffix


class DaemonSetController(ControllerBase):
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
