"""Previews of an operation on one cluster, changing nothing: its dry run (what it would
change, with every write sent as a server-side dry run) and its rendering (the manifests it
would apply)."""

from __future__ import annotations

from adapters.kit.apply.previewer import Previewer
from adapters.kit.apply.release_labels import labelled
from adapters.kit.model.object_changes import ClusterDryRun
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import ApplyPlan, CrdRemoval
from adapters.kit.model.renderings import RenderedHook, Rendering
from adapters.kit.run.executor.cluster_work import ClusterWork

__all__ = ["dry_run", "rendering"]


async def dry_run(work: ClusterWork) -> ClusterDryRun:
    """What the operation would change; raises what the operation would meet (`PlanError`,
    `ApplyError`)."""
    previewer = Previewer(work.session, concurrency=work.concurrency)
    if work.record.delete:
        work.check_namespace()
        preview = await previewer.uninstall(
            work.release,
            work.namespace,
            mesh=work.declaration.mesh,
            crds=CrdRemoval.of(work.record.parameters),
        )
    else:
        preview = await previewer.install_or_upgrade(await work.judged_plan())
    return ClusterDryRun(
        cluster=work.target.name, changes=preview.changes, unchanged=preview.unchanged
    )


def rendering(plan: ApplyPlan) -> Rendering:
    """The objects (labelled as applying labels them) and hooks of ``plan``."""

    def mine(obj: KubeObject) -> KubeObject:
        return obj if plan.ownership_fields_only else labelled(obj, plan.release, plan.mesh)

    return Rendering(
        release=plan.release,
        namespace=plan.namespace,
        mesh_version=plan.metadata.get("mesh_version", ""),
        objects=tuple(mine(obj) for obj in plan.objects),
        hooks=tuple(
            RenderedHook(
                phases=tuple(phase.value for phase in hook.phases),
                manifest=mine(hook.manifest),
            )
            for hook in plan.hooks
        ),
    )
