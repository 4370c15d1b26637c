"""The horizontal pod autoscaler: without metrics, the status of a target it can scale."""

from __future__ import annotations

from kubesim.controllers.reconciling import (
    DEPLOYMENTS,
    HPAS,
    REPLICASETS,
    STATEFULSETS,
    ControllerBase,
    condition,
)


class AutoscalerController(ControllerBase):
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
