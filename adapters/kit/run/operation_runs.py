"""An admitted operation run in the background: a concurrency slot, every target cluster in
parallel, all within the operation's deadline; however it ends (done, deadline, cancelled,
interrupted, crashed) its final state is recorded."""

from __future__ import annotations

import asyncio

import structlog

from adapters.kit.model.records import ClusterResult, ClusterTarget, ErrorDetail, OperationState
from adapters.kit.run.cluster_runs import run_on_cluster
from adapters.kit.run.operation_outcomes import adapter_crashed, overall_state, timed_out
from adapters.kit.run.request_admission import AdmittedRequest
from adapters.kit.run.runner_context import RunnerContext

__all__ = ["run_operation"]

_log = structlog.get_logger(__name__)


async def run_operation(
    context: RunnerContext, admitted: AdmittedRequest, operation_id: str
) -> None:
    """Run the recorded operation ``operation_id`` to a final state (the task's body)."""
    progress = context.progress
    try:
        async with context.slots:
            progress.start(operation_id, admitted.targets)
            state, error = await _on_every_cluster(context, admitted, operation_id)
            progress.finish(operation_id, state, error)
    except asyncio.CancelledError:
        progress.finish(operation_id, context.tasks.stop_reason(operation_id), None)
    except Exception as exc:
        _log.exception("operation.crashed", operation_id=operation_id, operation=admitted.spec.id)
        progress.finish(operation_id, OperationState.FAILED, adapter_crashed(admitted.spec.id, exc))
    finally:
        context.tasks.done(operation_id)
        progress.forget(operation_id)


async def _on_every_cluster(
    context: RunnerContext, admitted: AdmittedRequest, operation_id: str
) -> tuple[OperationState, ErrorDetail | None]:
    """The operation's state once every cluster finished, or FAILED at its deadline."""
    results: list[ClusterResult] = []

    async def one(target: ClusterTarget) -> None:
        results.append(await run_on_cluster(context, admitted.spec, operation_id, target))

    try:
        async with asyncio.timeout(admitted.timeout_seconds):
            async with asyncio.TaskGroup() as group:
                for target in admitted.targets:
                    group.create_task(one(target), name=f"{operation_id}@{target.name}")
    except TimeoutError:
        return OperationState.FAILED, timed_out(admitted.spec.id, admitted.timeout_seconds)
    return overall_state(results), None
