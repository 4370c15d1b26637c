"""Installing or upgrading: the operation's judged plan handed to the `Applier`."""

from __future__ import annotations

from adapters.kit.apply.applier import Applier
from adapters.kit.model.records import ClusterResult, Severity
from adapters.kit.run.executor.apply_reports import applied_result, progress_events
from adapters.kit.run.executor.cluster_work import ClusterWork
from adapters.kit.run.seam import OperationEmitter

__all__ = ["install_or_upgrade"]


async def install_or_upgrade(work: ClusterWork, emit: OperationEmitter) -> ClusterResult:
    """Plan, judge and apply the operation's objects as its release, waiting for readiness."""
    plan = await work.judged_plan(lambda text: emit(Severity.INFO, text))
    emit(
        Severity.INFO,
        f"applying {len(plan.objects)} objects as release {plan.namespace}/{plan.release}",
    )
    outcome = await Applier(work.session, concurrency=work.concurrency).install_or_upgrade(
        plan, progress_events(emit)
    )
    return applied_result(work.target, outcome, "applied", len(plan.objects))
