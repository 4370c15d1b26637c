"""When an applied object counts as ready: one rule per kind, in a table.

The rules read only `status` fields every API server reports (the same ones `kubectl rollout
status` and Helm's wait read). An object that is not ready yet says why: its own conditions, or
the state of its pods (`ImagePullBackOff` lives in a pod's container status, not in the
Deployment). Kinds without a rule are ready once applied. Waiting on these rules is `waiting`.

A workload that cannot create its Pods at all (a Deployment or ReplicaSet with condition
`ReplicaFailure`, reason `FailedCreate`: an admission webhook refused or could not be called, a
quota is exhausted) is *stuck*: the wait reports the cause at once, and fails with it when it
persists for `WaitPolicy.stuck_seconds` instead of running out the whole timeout. (A webhook
whose backend is still starting clears by itself within that time.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from adapters.kit.model.objects import KubeObject

__all__ = [
    "POD_OWNING_KINDS",
    "READINESS_RULES",
    "Readiness",
    "hook_completion",
    "pod_selector",
    "readiness_of",
    "reason_from_pods",
    "waits_for",
]


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """Whether one object is ready; if not, the machine-readable reason and a message."""

    ready: bool
    reason: str = ""
    message: str = ""
    failed: bool = False
    """A failure that waiting cannot fix (a Job out of retries): stop waiting for it."""
    stuck: bool = False
    """A failure that may clear by itself (Pods cannot be created): fail if it persists."""


READY = Readiness(ready=True)


def _status(obj: KubeObject) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _spec(obj: KubeObject) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _condition(obj: KubeObject, kind: str) -> Mapping[str, Any] | None:
    for condition in _status(obj).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("type") == kind:
            return condition
    return None


def _is_true(obj: KubeObject, kind: str) -> bool:
    condition = _condition(obj, kind)
    return condition is not None and condition.get("status") == "True"


def _failure(obj: KubeObject, kind: str, *, when: str, default_reason: str) -> Readiness | None:
    """Failed for good, in the condition's own words, when condition ``kind`` is ``when``."""
    condition = _condition(obj, kind)
    if condition is None or condition.get("status") != when:
        return None
    return Readiness(
        ready=False,
        failed=True,
        reason=str(condition.get("reason") or default_reason),
        message=str(condition.get("message") or ""),
    )


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) else default


def _not_observed(obj: KubeObject) -> Readiness | None:
    generation = _int((obj.get("metadata") or {}).get("generation"))
    observed = _int(_status(obj).get("observedGeneration"), -1)
    if generation and observed < generation:
        return Readiness(
            ready=False,
            reason="NotObserved",
            message=f"controller has not observed generation {generation} yet",
        )
    return None


def _false_condition(obj: KubeObject, default_reason: str, message: str) -> Readiness:
    """Not ready; take the reason from the first condition that is not True, if any."""
    for condition in _status(obj).get("conditions") or []:
        if isinstance(condition, dict) and condition.get("status") != "True":
            reason = str(condition.get("reason") or default_reason)
            text = str(condition.get("message") or message)
            return Readiness(ready=False, reason=reason, message=text)
    return Readiness(ready=False, reason=default_reason, message=message)


def _replica_failure(obj: KubeObject) -> Readiness | None:
    """Stuck when the controller cannot create Pods (condition ReplicaFailure), in its words."""
    condition = _condition(obj, "ReplicaFailure")
    if condition is None or condition.get("status") != "True":
        return None
    return Readiness(
        ready=False,
        stuck=True,
        reason=str(condition.get("reason") or "FailedCreate"),
        message=str(condition.get("message") or "pods cannot be created"),
    )


def _deployment(obj: KubeObject) -> Readiness:
    if _spec(obj).get("paused"):
        return READY
    blocked = _not_observed(obj) or _replica_failure(obj)
    if blocked:
        return blocked
    status = _status(obj)
    want = _int(_spec(obj).get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    available = _int(status.get("availableReplicas"))
    progressing = _condition(obj, "Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded":
        return Readiness(
            ready=False,
            reason="ProgressDeadlineExceeded",
            message=str(progressing.get("message") or ""),
        )
    if updated == available == want and (want == 0 or _is_true(obj, "Available")):
        return READY
    return _false_condition(
        obj, "MinimumReplicasUnavailable", f"{available}/{want} replicas available"
    )


def _replicaset(obj: KubeObject) -> Readiness:
    blocked = _not_observed(obj) or _replica_failure(obj)
    if blocked:
        return blocked
    want, ready = _int(_spec(obj).get("replicas"), 1), _int(_status(obj).get("readyReplicas"))
    return READY if ready >= want else _replicas_not_ready(ready, want)


def _replicas_not_ready(ready: int, want: int) -> Readiness:
    return Readiness(
        ready=False, reason="ReplicasNotReady", message=f"{ready}/{want} replicas ready"
    )


def _statefulset(obj: KubeObject) -> Readiness:
    pending = _not_observed(obj)
    if pending:
        return pending
    status = _status(obj)
    want = _int(_spec(obj).get("replicas"), 1)
    ready = _int(status.get("readyReplicas"))
    if ready != want:
        return _replicas_not_ready(ready, want)
    strategy = (_spec(obj).get("updateStrategy") or {}).get("type", "RollingUpdate")
    update, current = status.get("updateRevision"), status.get("currentRevision")
    if strategy == "RollingUpdate" and update and current != update:
        return Readiness(
            ready=False, reason="RollingUpdate", message=f"rolling out revision {update}"
        )
    return READY


def _daemonset(obj: KubeObject) -> Readiness:
    pending = _not_observed(obj)
    if pending:
        return pending
    status = _status(obj)
    desired = _int(status.get("desiredNumberScheduled"))
    ready = _int(status.get("numberReady"))
    updated = _int(status.get("updatedNumberScheduled"), desired)
    if ready == desired and updated == desired:
        return READY
    return Readiness(
        ready=False,
        reason="PodsNotReady",
        message=f"{ready}/{desired} pods ready, {updated}/{desired} updated",
    )


def _job(obj: KubeObject) -> Readiness:
    failed = _failure(obj, "Failed", when="True", default_reason="JobFailed")
    if failed is not None:
        return failed
    if _is_true(obj, "Complete"):
        return READY
    active = _int(_status(obj).get("active"))
    return Readiness(ready=False, reason="JobRunning", message=f"{active} pods active")


def _crd(obj: KubeObject) -> Readiness:
    refused = _failure(obj, "NamesAccepted", when="False", default_reason="NamesNotAccepted")
    if refused is not None:
        return refused
    if _is_true(obj, "Established"):
        return READY
    return Readiness(ready=False, reason="NotEstablished", message="CRD not established yet")


def _pod(obj: KubeObject) -> Readiness:
    phase = _status(obj).get("phase")
    if phase == "Succeeded" or _is_true(obj, "Ready"):
        return READY
    found = _reason_from_pod(obj)
    if phase == "Failed":
        reason, message = found or ("PodFailed", "")
        return Readiness(ready=False, failed=True, reason=reason, message=message)
    if found:
        return Readiness(ready=False, reason=found[0], message=found[1])
    return Readiness(ready=False, reason=str(phase or "Pending"), message="pod not ready")


def _service(obj: KubeObject) -> Readiness:
    if _spec(obj).get("type") != "LoadBalancer":
        return READY
    ingress = (_status(obj).get("loadBalancer") or {}).get("ingress") or []
    if ingress:
        return READY
    return Readiness(
        ready=False, reason="LoadBalancerPending", message="no load balancer address assigned"
    )


READINESS_RULES: dict[str, Callable[[KubeObject], Readiness]] = {
    "Deployment": _deployment,
    "ReplicaSet": _replicaset,
    "StatefulSet": _statefulset,
    "DaemonSet": _daemonset,
    "Job": _job,
    "CustomResourceDefinition": _crd,
    "Pod": _pod,
    "Service": _service,
}
"""Readiness by kind; kinds not listed are ready once applied."""

POD_OWNING_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job"})
"""Kinds whose pods tell why they are not ready."""


def readiness_of(obj: KubeObject) -> Readiness:
    """Apply the kind's rule (ready when the kind has none)."""
    rule = READINESS_RULES.get(str(obj.get("kind", "")))
    return rule(obj) if rule else READY


def hook_completion(obj: KubeObject) -> Readiness:
    """For hooks, done means finished: a hook Pod must have Succeeded, not merely be Ready."""
    if obj.get("kind") == "Pod":
        phase = _status(obj).get("phase")
        if phase == "Succeeded":
            return READY
        state = _pod(obj)
        if state.failed:
            return state
        return Readiness(
            ready=False,
            reason=state.reason if not state.ready else "Running",
            message=state.message,
        )
    return readiness_of(obj)


def waits_for(obj: KubeObject) -> bool:
    """Whether ``obj`` (a manifest) is something to wait on rather than ready once applied."""
    kind = str(obj.get("kind", ""))
    if kind == "Service":
        return _spec(obj).get("type") == "LoadBalancer"
    return kind in READINESS_RULES


def pod_selector(obj: KubeObject) -> str:
    """A label selector string for the pods of a workload ("" when it has none)."""
    selector = _spec(obj).get("selector")
    if not isinstance(selector, dict):
        template = (_spec(obj).get("template") or {}).get("metadata") or {}
        labels = template.get("labels") or {}
        return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(expression.get("values") or [])
        if operator == "In":
            parts.append(f"{key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


_BORING_WAITING = frozenset({"ContainerCreating", "PodInitializing"})


def _reason_from_pod(pod: KubeObject) -> tuple[str, str] | None:
    status = _status(pod)
    fallback: tuple[str, str] | None = None
    statuses = [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]
    for container in statuses:
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        terminated = state.get("terminated") or {}
        name = container.get("name", "")
        if waiting.get("reason"):
            found = (str(waiting["reason"]), f"container {name}: {waiting.get('message', '')}")
            if waiting["reason"] not in _BORING_WAITING:
                return found
            fallback = fallback or found
        elif terminated.get("reason") and terminated.get("exitCode", 0) != 0:
            return (str(terminated["reason"]), f"container {name} exited {terminated['exitCode']}")
    scheduled = _condition(pod, "PodScheduled")
    if scheduled is not None and scheduled.get("status") == "False":
        return (str(scheduled.get("reason") or "Unschedulable"), str(scheduled.get("message", "")))
    if fallback:
        return fallback
    ready = _condition(pod, "Ready")
    if ready is not None and ready.get("status") == "False" and ready.get("reason"):
        return (str(ready["reason"]), str(ready.get("message", "")))
    return None


def reason_from_pods(pods: Iterable[KubeObject]) -> tuple[str, str] | None:
    """The most telling (reason, message) among a workload's pods, or None if none says."""
    for pod in pods:
        found = _reason_from_pod(pod)
        if found:
            name = (pod.get("metadata") or {}).get("name", "")
            return found[0], f"pod {name}: {found[1]}"
    return None
