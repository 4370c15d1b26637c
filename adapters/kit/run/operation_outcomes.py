"""How operations end: the error of each way the runner ends one (its deadline, a crash of the
adapter or the executor) and the final record of an operation, its clusters included."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime

from adapters.kit.model.records import (
    TERMINAL_STATES,
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationState,
)
from adapters.kit.run.journal import interrupted
from serving.input_quoting import quoted

__all__ = [
    "INTERNAL",
    "OPERATION_TIMEOUT",
    "adapter_crashed",
    "executor_crashed",
    "final_record",
    "overall_state",
    "settled_result",
    "timed_out",
]

OPERATION_TIMEOUT = "OPERATION_TIMEOUT"
INTERNAL = "INTERNAL"
_RETRY_OR_REPORT = (
    "re-send the same operation_id to retry; if it fails again, report it with the adapter logs"
)


def timed_out(operation: str, deadline_seconds: float) -> ErrorDetail:
    """The error of an operation its deadline cut off."""
    return ErrorDetail(
        code=OPERATION_TIMEOUT,
        message=f"{operation} did not finish within {deadline_seconds:g}s",
        probable_cause="a workload did not become ready in time, or the "
        "Kubernetes API was slow or unreachable",
        suggested_remediation="look at this operation's events and "
        "GetMeshStatus for components that are not ready, fix them, then "
        "re-send with a longer timeout (ApplyOperationRequest.timeout)",
    )


def adapter_crashed(operation: str, exc: Exception) -> ErrorDetail:
    """The error of an operation the runner itself failed while running."""
    return ErrorDetail(
        code=INTERNAL,
        message=f"the adapter failed while running {operation}: {quoted(exc)}",
        probable_cause="a bug in the adapter",
        suggested_remediation=_RETRY_OR_REPORT,
    )


def executor_crashed(cluster: str, exc: Exception) -> ErrorDetail:
    """The error of a cluster whose executor raised instead of returning a result."""
    return ErrorDetail(
        code=INTERNAL,
        message=f"the executor failed on cluster {quoted(cluster)}: {quoted(exc)}",
        probable_cause="a bug in the adapter",
        suggested_remediation=_RETRY_OR_REPORT,
    )


def settled_result(result: ClusterResult, cluster: str) -> ClusterResult:
    """The executor's result for ``cluster``, FAILED when it reported a state that is not
    final (SUCCEEDED or FAILED)."""
    if result.state not in (OperationState.SUCCEEDED, OperationState.FAILED):
        result = dataclasses.replace(
            result,
            state=OperationState.FAILED,
            error=result.error
            or ErrorDetail(
                code=INTERNAL,
                message=f"the executor reported {result.state.value} as a final state",
                probable_cause="a bug in the adapter",
            ),
        )
    return dataclasses.replace(result, cluster=cluster)


def overall_state(results: Iterable[ClusterResult]) -> OperationState:
    """FAILED when any cluster failed, else SUCCEEDED."""
    if any(r.state is OperationState.FAILED for r in results):
        return OperationState.FAILED
    return OperationState.SUCCEEDED


def final_record(
    record: OperationRecord, state: OperationState, error: ErrorDetail | None
) -> OperationRecord:
    """``record`` ended in ``state``: clusters still running end with it (with ``error`` when
    FAILED; a FAILED operation without an error of its own takes its first cluster's)."""
    if state is OperationState.INTERRUPTED:
        return interrupted(
            record,
            cause="the adapter was shut down (SIGTERM or a stop request) while the operation ran",
        )
    results = tuple(
        r
        if r.state in TERMINAL_STATES
        else dataclasses.replace(
            r, state=state, error=error if state is OperationState.FAILED else None
        )
        for r in record.cluster_results
    ) or tuple(ClusterResult(cluster=c, state=state, error=error) for c in record.clusters)
    if state is OperationState.FAILED and error is None:
        error = next((r.error for r in results if r.error is not None), None)
    return dataclasses.replace(
        record, state=state, cluster_results=results, error=error, end_time=datetime.now(UTC)
    )
