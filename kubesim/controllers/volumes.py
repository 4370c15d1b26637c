"""Simulated volume binding: every PersistentVolumeClaim is Bound to a volume of its size."""

from __future__ import annotations

from kubesim.controllers.reconciling import PVCS, ControllerBase
from kubesim.objects import copy_json


class VolumeControllers(ControllerBase):
    def _claim(self, ns: str, name: str) -> None:
        claim = self._get(PVCS, ns, name)
        if claim is None or claim["metadata"].get("deletionTimestamp"):
            return
        if (claim.get("status") or {}).get("phase") == "Bound":
            return
        spec = claim.get("spec") or {}
        if not spec.get("volumeName"):
            new = copy_json(claim)
            new["spec"]["volumeName"] = f"pvc-{claim['metadata']['uid']}"
            annotations = new["metadata"].setdefault("annotations", {})
            annotations["pv.kubernetes.io/bind-completed"] = "yes"
            annotations["pv.kubernetes.io/bound-by-controller"] = "yes"
            claim = self.cluster.write(self._type(PVCS), claim, new)
        storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
        self._set_status(
            PVCS,
            claim,
            {
                "phase": "Bound",
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "capacity": {"storage": storage},
            },
        )
