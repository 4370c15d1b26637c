"""One operation's work on one cluster: the executor's result, however it ends, recorded."""

from __future__ import annotations

import structlog

from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.records import ClusterResult, ClusterTarget, OperationState
from adapters.kit.run.operation_outcomes import executor_crashed, settled_result
from adapters.kit.run.runner_context import RunnerContext

__all__ = ["run_on_cluster"]

_log = structlog.get_logger(__name__)


async def run_on_cluster(
    context: RunnerContext, spec: OperationSpec, operation_id: str, target: ClusterTarget
) -> ClusterResult:
    """Execute the operation on ``target`` and record its result; an executor that raises or
    reports a state that is not final is a FAILED result."""
    progress = context.progress
    record = progress.current(operation_id)
    try:
        result = await context.executor.execute(
            spec, record, target, progress.emitter(record, target.name)
        )
    except Exception as exc:
        _log.exception("operation.cluster_crashed", operation_id=operation_id, cluster=target.name)
        result = ClusterResult(
            cluster=target.name,
            state=OperationState.FAILED,
            error=executor_crashed(target.name, exc),
        )
    result = settled_result(result, target.name)
    progress.cluster_finished(operation_id, result)
    return result
