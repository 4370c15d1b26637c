"""Uninstalling a release (a delete): its chart's delete hooks found by rendering the installed
version, then the `Applier` removing what the release's inventory holds."""

from __future__ import annotations

import dataclasses

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.crd_removal import kept_crds_note
from adapters.kit.apply.inventory import read_inventory
from adapters.kit.declare.sources import ChartSource
from adapters.kit.model.plans import CrdRemoval, Hook
from adapters.kit.model.records import ClusterResult, OperationState, Severity
from adapters.kit.plan.planner import PlanError
from adapters.kit.run.executor.apply_reports import applied_result, progress_events
from adapters.kit.run.executor.cluster_work import ClusterWork, wait_policy
from adapters.kit.run.seam import OperationEmitter

__all__ = ["uninstall"]


async def uninstall(work: ClusterWork, emit: OperationEmitter) -> ClusterResult:
    """Remove the release; SUCCEEDED (saying so) when it is not installed, and naming the
    CustomResourceDefinitions it kept."""
    work.check_namespace()
    namespace, release = work.namespace, work.release
    hooks = await _delete_hooks(work, emit)
    outcome = await Applier(work.session, concurrency=work.concurrency).uninstall(
        release,
        namespace,
        progress_events(emit),
        mesh=work.declaration.mesh,
        hooks=hooks,
        wait_policy=wait_policy(work.record),
        crds=CrdRemoval.of(work.record.parameters),
    )
    if outcome.noop:
        summary = f"release {namespace}/{release} is not installed; nothing to delete"
        emit(Severity.INFO, summary)
        return ClusterResult(
            cluster=work.target.name, state=OperationState.SUCCEEDED, summary=summary
        )
    result = applied_result(work.target, outcome, "deleted", outcome.deleted)
    if not outcome.crds_kept:
        return result
    note = kept_crds_note(outcome.crds_kept, release)
    emit(Severity.WARNING, note)
    return dataclasses.replace(result, summary=f"{result.summary}; {note}")


async def _delete_hooks(work: ClusterWork, emit: OperationEmitter) -> tuple[Hook, ...]:
    """Charts may carry delete hooks: render the installed version to find them."""
    if not any(isinstance(s, ChartSource) for s in work.spec.sources):
        return ()
    installed = await read_inventory(
        work.session, work.namespace, work.release, mesh=work.declaration.mesh
    )
    if installed is None:
        return ()
    version = installed.metadata.get("mesh_version", "")
    try:
        plan = await work.plan(
            record=dataclasses.replace(work.record, mesh_version=version),
            installed_version=False,
        )
    except PlanError as exc:
        emit(
            Severity.WARNING,
            "cannot render the installed charts; uninstalling without delete hooks",
            details=exc.detail.message,
        )
        return ()
    return plan.hooks
