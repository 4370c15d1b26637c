"""The deployment controller: one replica set per pod template, the newest scaled to the
replicas wanted and the older ones to zero, and the status `kubectl rollout status` reads."""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    DEPLOYMENTS,
    FAIL_ANNOTATION,
    PODS,
    REPLICASETS,
    ControllerBase,
    condition,
    fail_reason,
    owner_ref,
    template_hash,
)
from kubesim.objects import Obj, copy_json

REVISION = "deployment.kubernetes.io/revision"


class DeploymentController(ControllerBase):
    def _deployment(self, ns: str, name: str) -> None:
        deploy = self._get(DEPLOYMENTS, ns, name)
        if deploy is None or deploy["metadata"].get("deletionTimestamp"):
            return
        desired = int(deploy["spec"].get("replicas", 1))
        pod_hash = template_hash(deploy["spec"].get("template") or {})
        owned = self._owned(REPLICASETS, deploy)
        fail = fail_reason(deploy)
        current = next(
            (
                rs
                for rs in owned
                if (rs["metadata"].get("labels") or {}).get("pod-template-hash") == pod_hash
            ),
            None,
        )
        if current is None:
            current = self._create(
                REPLICASETS,
                ns,
                _new_replicaset(deploy, owned, pod_hash, desired=desired, fail=fail),
            )
            if current is None:
                return
        elif current["spec"].get("replicas") != desired or fail_reason(current) != fail:
            current = self._rescale(current, desired=desired, fail=fail)
        for rs in owned:
            if rs["metadata"]["uid"] != current["metadata"]["uid"] and rs["spec"].get("replicas"):
                new = copy_json(rs)
                new["spec"]["replicas"] = 0
                self.cluster.write(self._type(REPLICASETS), rs, new)
        owned = self._owned(REPLICASETS, deploy)
        self._deployment_status(deploy, current, owned, desired, fail)

    def _rescale(self, current: Obj, *, desired: int, fail: str | None) -> Obj:
        """The current replica set with the replicas (and simulated failure) wanted now."""
        new = copy_json(current)
        new["spec"]["replicas"] = desired
        annotations = new["metadata"].setdefault("annotations", {})
        if fail is None:
            annotations.pop(FAIL_ANNOTATION, None)
        else:
            annotations[FAIL_ANNOTATION] = fail
        return self.cluster.write(self._type(REPLICASETS), current, new)

    def _deployment_status(
        self, deploy: Obj, current: Obj, owned: list[Obj], desired: int, fail: str | None
    ) -> None:
        total = sum(int((rs.get("status") or {}).get("replicas", 0)) for rs in owned)
        ready = sum(int((rs.get("status") or {}).get("readyReplicas", 0)) for rs in owned)
        available = sum(int((rs.get("status") or {}).get("availableReplicas", 0)) for rs in owned)
        updated = int((current.get("status") or {}).get("replicas", 0))
        previous = (deploy.get("status") or {}).get("conditions") or []
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
        if fail is not None and total >= desired and self._pods_settled(current):
            progress = ("ProgressDeadlineExceeded", "has timed out progressing.")
        elif updated == desired and available >= desired and total == updated:
            progress = ("NewReplicaSetAvailable", "has successfully progressed.")
        else:
            progress = ("ReplicaSetUpdated", "is progressing.")
        progressing = condition(
            "Progressing",
            progress[0] != "ProgressDeadlineExceeded",
            progress[0],
            f'ReplicaSet "{current["metadata"]["name"]}" {progress[1]}',
            previous,
        )
        status: dict[str, Any] = {"observedGeneration": deploy["metadata"].get("generation", 1)}
        counts = {
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": desired - available,
        }
        status.update({key: count for key, count in counts.items() if count > 0})
        status["conditions"] = [available_cond, progressing]
        self._set_status(DEPLOYMENTS, deploy, status)

    def _pods_settled(self, owner: Obj) -> bool:
        """Every pod of `owner` has been looked at by the simulated kubelet."""
        return all((p.get("status") or {}).get("startTime") for p in self._owned(PODS, owner))


def _new_replicaset(
    deploy: Obj, owned: list[Obj], pod_hash: str, *, desired: int, fail: str | None
) -> Obj:
    """The replica set for the deployment's current template (the next revision)."""
    spec = deploy["spec"]
    rs_template = copy_json(spec.get("template") or {})
    rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
    selector = copy_json(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
    revisions = [int((rs["metadata"].get("annotations") or {}).get(REVISION, "0")) for rs in owned]
    annotations = {
        REVISION: str(max(revisions, default=0) + 1),
        "deployment.kubernetes.io/desired-replicas": str(desired),
    }
    if fail is not None:
        annotations[FAIL_ANNOTATION] = fail
    return {
        "metadata": {
            "name": f"{deploy['metadata']['name']}-{pod_hash}",
            "labels": dict(rs_template["metadata"]["labels"]),
            "annotations": annotations,
            "ownerReferences": [owner_ref(deploy)],
        },
        "spec": {"replicas": desired, "selector": selector, "template": rs_template},
    }
