"""The apply engine's entry point: install, upgrade and uninstall one release in one cluster.

An `Applier` is given a `ClusterSession` and carries out `ApplyPlan`s the way Helm carries out
releases, with server-side apply instead of three-way merges. Like Helm's action package, each
call builds one `RunContext` (session, policies, sink, deadline) and runs one small action over
it: `install.Install` (tiers, hooks, prune) or `uninstall.Uninstall`. Objects of one tier are
applied concurrently (bounded), tiers in order; every step is reported to the sink; failures
raise `ApplyError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from adapters.kit.apply import crd_removal
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.install import Install
from adapters.kit.apply.ownership import owned_keys, release_versions
from adapters.kit.apply.run_context import ClusterWork, RunContext
from adapters.kit.apply.uninstall import Uninstall
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import (
    ApplyOutcome,
    ApplyPlan,
    ApplyPolicy,
    CrdRemoval,
    Hook,
    ProgressSink,
    WaitPolicy,
    fields_manager,
)

__all__ = ["Applier"]


class Applier:
    """Installs, upgrades and uninstalls releases through one cluster session."""

    def __init__(self, session: ClusterSession, *, concurrency: int = 12) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._work = ClusterWork(session=session, concurrency=concurrency)

    async def install_or_upgrade(self, plan: ApplyPlan, sink: ProgressSink) -> ApplyOutcome:
        """Bring the cluster to ``plan`` (`install`: the steps, in order)."""
        policy = plan.apply_policy
        if plan.ownership_fields_only:
            policy = replace(policy, field_manager=fields_manager(plan.release))
        ctx = RunContext(
            work=self._work,
            release=plan.release,
            mesh=plan.mesh,
            sink=sink,
            apply_policy=policy,
            wait_policy=plan.wait_policy,
            adoption=plan.adoption,
        )
        return await Install(ctx, plan).run()

    async def uninstall(
        self,
        release: str,
        namespace: str,
        sink: ProgressSink,
        *,
        mesh: str,
        hooks: Sequence[Hook] = (),
        wait_policy: WaitPolicy | None = None,
        apply_policy: ApplyPolicy | None = None,
        crds: CrdRemoval = CrdRemoval.KEEP,
    ) -> ApplyOutcome:
        """Remove a release: pre-delete hooks, objects in reverse order, post-delete hooks.

        Objects marked keep stay, and so do the release's CRDs unless ``crds`` says otherwise
        (`crd_removal`: purging is refused before anything is touched while custom resources of
        them exist beyond the release's own, unless forced). A release recorded as owning fields
        only gets its fields released instead. No inventory means nothing to do (success, zero
        deletions), except CRDs an earlier uninstall kept when ``crds`` asks to remove them.
        """
        ctx = RunContext(
            work=self._work,
            release=release,
            mesh=mesh,
            sink=sink,
            apply_policy=apply_policy or ApplyPolicy(),
            wait_policy=wait_policy or WaitPolicy(),
        )
        return await Uninstall(ctx, namespace, hooks, crds).run()

    # -- reads dry runs share with the actions ----------------------------------------------

    async def writable_versions(self, plan: ApplyPlan) -> dict[str, str]:
        """resourceVersions of the plan's existing objects it may write; raises the refusals
        applying would (objects of another mesh, objects it may not adopt). For dry runs."""
        return await release_versions(self._work, plan)

    async def owned_keys(self, refs: Sequence[ObjectRef], release: str, mesh: str) -> set[str]:
        """Keys of ``refs`` that exist and still carry ``release``'s labels. For dry runs."""
        return await owned_keys(self._work, refs, release, mesh)

    async def refuse_over_custom_resources(
        self, crds: Sequence[ObjectRef], release_objects: Sequence[ObjectRef]
    ) -> None:
        """FAILED_PRECONDITION while custom resources of ``crds`` exist beyond the release's
        (``release_objects``). For uninstall and dry runs."""
        await crd_removal.refuse_over_custom_resources(self._work.session, crds, release_objects)

    async def kept_crds(self, release: str, mesh: str) -> list[ObjectRef]:
        """CRDs an earlier uninstall of ``release`` kept: still labelled as its, for ``mesh``.
        For uninstall and dry runs."""
        return await crd_removal.kept_crds(self._work.session, release, mesh)
