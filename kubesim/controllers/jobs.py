"""The job controller: pods until enough have succeeded, then the Complete condition."""

from __future__ import annotations

from typing import Any

from kubesim.controllers.reconciling import (
    JOBS,
    PODS,
    ControllerBase,
    pod_ready,
)
from kubesim.objects import Obj, now_rfc3339, random_suffix


class JobController(ControllerBase):
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
        self._set_status(JOBS, job, _job_status(status, active, succeeded, completions))


def _job_status(
    status: dict[str, Any], active: list[Obj], succeeded: int, completions: int
) -> dict[str, Any]:
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
                "type": kind,
                "status": "True",
                "reason": "CompletionsReached",
                "message": "Reached expected number of succeeded pods",
                "lastProbeTime": now,
                "lastTransitionTime": now,
            }
            for kind in ("SuccessCriteriaMet", "Complete")
        ]
    if new_status.get("active") == 0:
        new_status.pop("active")
    return new_status
