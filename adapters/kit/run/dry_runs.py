"""Dry runs: what an admitted request would change on each target cluster, found with
server-side dry runs within its deadline; nothing is recorded (no journal entry, no events)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import structlog

from adapters.kit.model.object_changes import (
    DRY_RUN_ANSWER_BYTES,
    ClusterDryRun,
    DryRun,
    bounded_changes,
    dry_run_result,
)
from adapters.kit.model.records import (
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
)
from adapters.kit.run.operation_outcomes import INTERNAL, OPERATION_TIMEOUT
from adapters.kit.run.request_admission import AdmittedRequest
from adapters.kit.run.runner_context import RunnerContext
from serving.input_quoting import quoted

__all__ = ["dry_run"]

_log = structlog.get_logger(__name__)


async def dry_run(context: RunnerContext, admitted: AdmittedRequest) -> DryRun:
    """The changes on each cluster, in a concurrency slot; a cluster whose dry run fails (a
    refused write, the deadline) carries its error, and the answer is FAILED."""
    record = dataclasses.replace(
        admitted.pending_record(mesh=context.mesh, operation_id="", previous=None),
        state=OperationState.RUNNING,
        start_time=datetime.now(UTC),
        attempt=0,
    )
    async with context.slots:
        found = await _on_every_cluster(context, admitted, record)
    timed_out = ErrorDetail(
        code=OPERATION_TIMEOUT,
        message=f"the dry run of {admitted.spec.id} did not finish within "
        f"{admitted.timeout_seconds:g}s",
        probable_cause="the Kubernetes API was slow or unreachable",
        suggested_remediation="re-send with a longer timeout (ApplyOperationRequest.timeout)",
    )
    outcomes = [
        found.get(t.name) or ClusterDryRun(cluster=t.name, error=timed_out)
        for t in admitted.targets
    ]
    return _answer(context.mesh, record, outcomes)


async def _on_every_cluster(
    context: RunnerContext, admitted: AdmittedRequest, record: OperationRecord
) -> dict[str, ClusterDryRun]:
    """Each cluster's dry run that finished within the deadline, by cluster name."""
    found: dict[str, ClusterDryRun] = {}

    async def one(target: ClusterTarget) -> None:
        try:
            found[target.name] = await context.executor.dry_run(admitted.spec, record, target)
        except Exception as exc:
            _log.exception(
                "dry_run.cluster_crashed", operation=admitted.spec.id, cluster=target.name
            )
            found[target.name] = ClusterDryRun(
                cluster=target.name,
                error=ErrorDetail(
                    code=INTERNAL,
                    message=f"the dry run failed on cluster {quoted(target.name)}: {quoted(exc)}",
                    probable_cause="a bug in the adapter",
                    suggested_remediation="report it with the adapter logs",
                ),
            )

    try:
        async with asyncio.timeout(admitted.timeout_seconds):
            async with asyncio.TaskGroup() as group:
                for target in admitted.targets:
                    group.create_task(one(target), name=f"dry-run@{target.name}")
    except TimeoutError:
        pass
    return found


def _answer(mesh: str, record: OperationRecord, outcomes: list[ClusterDryRun]) -> DryRun:
    """The dry run's record (SUCCEEDED, or FAILED with the first cluster's error) and each
    cluster's changes, within the answer's size budget."""
    results = tuple(dry_run_result(outcome) for outcome in outcomes)
    budget = DRY_RUN_ANSWER_BYTES // max(1, len(outcomes))
    clusters = tuple(bounded_changes(outcome, budget) for outcome in outcomes)
    failed = next((r.error for r in results if r.error is not None), None)
    record = dataclasses.replace(
        record,
        state=OperationState.FAILED if failed else OperationState.SUCCEEDED,
        cluster_results=results,
        error=failed,
        end_time=datetime.now(UTC),
    )
    _log.info(
        "dry_run.finished",
        mesh=mesh,
        operation=record.operation,
        state=record.state.value,
        clusters=list(record.clusters),
        changes=sum(len(c.changes) + c.omitted for c in clusters),
    )
    return DryRun(record=record, clusters=clusters)
