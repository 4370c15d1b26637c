"""Installing or upgrading one release: the steps of `Applier.install_or_upgrade`, in order.

inventory pending → Namespaces → CRDs (wait Established here when custom resources or hooks need
them, else with the workloads) → pre hooks → config/RBAC/Services → workloads → webhooks →
custom resources → wait ready → post hooks → prune what the previous revision had and this one
does not → inventory deployed. A plan identical to the deployed one, with every object present,
changes nothing. Cancelling leaves the inventory pending, and the next run resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

import structlog

from adapters.kit.apply.apply_tiers import Tier, tier_of, tiers_of
from adapters.kit.apply.fields_release import release_fields
from adapters.kit.apply.hooks import run_hooks
from adapters.kit.apply.inventory import (
    ReleaseRecord,
    ReleaseState,
    canonical_json,
    now_text,
    plan_digest,
    read_inventory,
    write_inventory,
)
from adapters.kit.apply.namespaces import (
    check_missing_namespaces,
    create_namespace,
    missing_namespaces,
)
from adapters.kit.apply.object_writes import ObjectWriter
from adapters.kit.apply.ownership import release_versions
from adapters.kit.apply.prune import prune
from adapters.kit.apply.readiness import waits_for
from adapters.kit.apply.release_labels import labelled
from adapters.kit.apply.run_context import RunContext, concurrent_steps
from adapters.kit.apply.waiting import wait_ready
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import ApplyOutcome, ApplyPlan, HookPhase, ProgressKind

__all__ = ["Install"]

log = structlog.get_logger(__name__)

_CRD_WAIT_SECONDS = 60.0


@dataclass(frozen=True, kw_only=True)
class _Found:
    """What the cluster holds and what the plan encodes to, read before anything is written."""

    bodies: dict[int, bytes]
    digest: str
    record: ReleaseRecord | None
    versions: dict[str, str] | None
    """The release's objects found by listing (key → resourceVersion); None for fields-only
    plans, which label nothing."""
    missing: list[str]


def _pending_record(plan: ApplyPlan, record: ReleaseRecord | None, digest: str) -> ReleaseRecord:
    """The inventory written before anything else: this plan, pending; a pending record is
    resumed at its own revision."""
    upgrade = record is not None and record.deployed_before
    if record is None:
        revision = 1
    else:
        revision = record.revision if record.status.pending else record.revision + 1
    return ReleaseRecord(
        release=plan.release,
        namespace=plan.namespace,
        mesh=plan.mesh,
        status=ReleaseState.PENDING_UPGRADE if upgrade else ReleaseState.PENDING_INSTALL,
        revision=revision,
        objects=plan.refs,
        previous_objects=record.objects_in_cluster if record else (),
        hook_objects=record.hook_objects if record else (),
        keep=plan.keep | (record.keep if record else frozenset()),
        metadata=dict(plan.metadata),
        plan_digest=digest,
        ownership_fields_only=plan.ownership_fields_only,
        created=record.created if record else now_text(),
        updated=now_text(),
    )


class Install:
    """One install or upgrade of ``plan`` through ``ctx`` (whose policy is the plan's, with the
    release's own field manager for fields-only plans)."""

    def __init__(self, ctx: RunContext, plan: ApplyPlan) -> None:
        self._ctx = ctx
        self._plan = plan
        self._objects = [
            obj if plan.ownership_fields_only else labelled(obj, plan.release, plan.mesh)
            for obj in plan.objects
        ]
        self._tiers = tiers_of(self._objects)

    async def run(self) -> ApplyOutcome:
        """Bring the cluster to the plan; see the module docstring for the steps."""
        ctx, plan = self._ctx, self._plan
        found = await self._look()
        declared = check_missing_namespaces(plan, found.missing)
        if await self._is_noop(found):
            return self._unchanged()
        pending = _pending_record(plan, found.record, found.digest)
        self._log_start(pending)
        for name in found.missing:
            # The release namespace first holds the inventory; declared ones are applied whole.
            if name == plan.namespace or name not in declared:
                await create_namespace(ctx.work, name, ctx.apply_policy)
        await write_inventory(ctx.session, pending)
        writer = ObjectWriter(ctx=ctx, versions=found.versions, bodies=found.bodies)
        upgrade = pending.status is ReleaseState.PENDING_UPGRADE
        hook_objects = [*pending.hook_objects]
        hook_objects += await self._apply_tiers(writer, upgrade)
        hook_objects += await run_hooks(
            ctx, plan.hooks, HookPhase.POST_UPGRADE if upgrade else HookPhase.POST_INSTALL
        )
        ctx.counts.deleted += await self._remove_dropped(pending)
        return await self._deployed(pending, hook_objects)

    # -- before anything is written ---------------------------------------------------------

    def _encode(self) -> tuple[dict[int, bytes], str]:
        """Each object encoded once, for the plan's digest and as its request body."""
        encoded = [canonical_json(obj) for obj in self._objects]
        bodies = {id(obj): body for obj, body in zip(self._objects, encoded, strict=True)}
        return bodies, plan_digest(self._plan, encoded)

    async def _look(self) -> _Found:
        """What the cluster holds, read while the objects are encoded (a large plan's JSON
        takes milliseconds): the reads wait on the server, the encoding on CPU."""
        ctx, plan = self._ctx, self._plan

        async def listed() -> dict[str, str] | None:
            # A fields-only plan adds no release label, so only reading each object tells.
            return None if plan.ownership_fields_only else await release_versions(ctx.work, plan)

        async with concurrent_steps() as group:
            digesting = group.create_task(asyncio.to_thread(self._encode))
            reading = group.create_task(
                read_inventory(ctx.session, plan.namespace, plan.release, mesh=plan.mesh)
            )
            listing = group.create_task(listed())
            looking = group.create_task(missing_namespaces(ctx.work, plan))
        bodies, digest = digesting.result()
        return _Found(
            bodies=bodies,
            digest=digest,
            record=reading.result(),
            versions=listing.result(),
            missing=looking.result(),
        )

    async def _is_noop(self, found: _Found) -> bool:
        """The release is deployed from this very plan and every object is still there.

        The listed versions answer presence without reading each object; fields-only plans,
        which label nothing, read each one.
        """
        record = found.record
        if record is None or record.status is not ReleaseState.DEPLOYED:
            return False
        if record.plan_digest != found.digest:
            return False
        refs = self._plan.refs
        if found.versions is not None:
            return all(ref.key in found.versions for ref in refs)
        present = await self._ctx.work.each(refs, self._ctx.session.get_ref)
        return all(obj is not None for obj in present)

    def _unchanged(self) -> ApplyOutcome:
        refs = self._plan.refs
        for ref in refs:
            self._ctx.report(ProgressKind.UNCHANGED, ref, f"{ref} unchanged")
        log.info("release unchanged", release=self._plan.release, cluster=self._ctx.session.name)
        return ApplyOutcome(unchanged=len(refs), noop=True)

    def _log_start(self, pending: ReleaseRecord) -> None:
        log.info(
            "release apply started",
            release=pending.release,
            namespace=pending.namespace,
            cluster=self._ctx.session.name,
            state=pending.status.value,
            revision=pending.revision,
            objects=len(pending.objects),
        )

    # -- the tiers --------------------------------------------------------------------------

    def _tier(self, tier: Tier) -> list[KubeObject]:
        return self._tiers.get(tier, [])

    def _crds_first(self) -> bool:
        """Only custom resources (and hooks that are ones) need their CRDs served first; a plan
        without any waits for the CRDs with its workloads (a busy API server may take seconds
        to establish each)."""
        custom = Tier.CUSTOM_RESOURCES
        return bool(self._tier(Tier.CRDS)) and (
            bool(self._tier(custom)) or any(tier_of(h.manifest) == custom for h in self._plan.hooks)
        )

    async def _apply_tiers(self, writer: ObjectWriter, upgrade: bool) -> list[ObjectRef]:
        """Namespaces, CRDs, pre hooks, then the other tiers while waiting; returns the pre
        hooks' objects left in the cluster."""
        ctx, wait_policy = self._ctx, self._plan.wait_policy
        await writer.apply(self._tier(Tier.NAMESPACES))
        established: dict[str, KubeObject] = {}
        await writer.apply(self._tier(Tier.CRDS), established)
        crds_first = self._crds_first()
        if crds_first:
            await self._wait_established(established)
        pre = HookPhase.PRE_UPGRADE if upgrade else HookPhase.PRE_INSTALL
        hook_objects = await run_hooks(ctx, self._plan.hooks, pre)
        await writer.apply(self._tier(Tier.CONFIG))
        await writer.apply(self._tier(Tier.WORKLOADS))
        # Workloads start becoming ready while webhooks and custom resources are applied.
        async with concurrent_steps() as group:
            group.create_task(
                self._wait(self._waitable(Tier.NAMESPACES, Tier.CONFIG, Tier.WORKLOADS)),
                name=f"wait-ready {ctx.release}",
            )
            if self._tier(Tier.CRDS) and not crds_first and wait_policy.wait_for_ready:
                group.create_task(
                    self._wait_established(established), name=f"wait-crds {ctx.release}"
                )
            await writer.apply(self._tier(Tier.LATE))
            await writer.apply(self._tier(Tier.CUSTOM_RESOURCES))
            await self._wait(self._waitable(Tier.LATE, Tier.CUSTOM_RESOURCES))
        return hook_objects

    def _waitable(self, *chosen: Tier) -> list[ObjectRef]:
        if not self._plan.wait_policy.wait_for_ready:
            return []
        return [
            ObjectRef.from_manifest(obj)
            for tier in chosen
            for obj in self._tier(tier)
            if waits_for(obj)
        ]

    async def _wait(
        self,
        refs: Sequence[ObjectRef],
        *,
        within_seconds: float | None = None,
        seen: dict[str, KubeObject] | None = None,
    ) -> None:
        """Wait for ``refs`` within the run's budget (or less); count those ready."""
        ctx = self._ctx
        budget = ctx.left() if within_seconds is None else within_seconds
        result = await wait_ready(
            ctx.session,
            refs,
            self._plan.wait_policy,
            ctx.sink,
            within_seconds=max(0.0, budget),
            observed=seen,
        )
        ctx.counts.ready += len(result.ready)
        result.raise_for_failure()

    async def _wait_established(self, established: dict[str, KubeObject]) -> None:
        crds = [ObjectRef.from_manifest(obj) for obj in self._tier(Tier.CRDS)]
        within = min(_CRD_WAIT_SECONDS, self._ctx.left())
        await self._wait(crds, within_seconds=within, seen=established)

    # -- after the tiers --------------------------------------------------------------------

    async def _remove_dropped(self, pending: ReleaseRecord) -> int:
        """Prune what the previous revision had and this plan does not (a fields-only plan
        gives its fields on those up instead); returns how many existed."""
        ctx, plan = self._ctx, self._plan
        previous, refs = pending.previous_objects, plan.refs
        if plan.ownership_fields_only:
            wanted = {ref.key for ref in refs}
            dropped = [ref for ref in previous if ref.key not in wanted]
            return await release_fields(ctx, dropped, ctx.apply_policy, ProgressKind.PRUNED)
        if ctx.apply_policy.prune:
            return await prune(ctx, previous, refs, pending.keep)
        return 0

    async def _deployed(
        self, pending: ReleaseRecord, hook_objects: Sequence[ObjectRef]
    ) -> ApplyOutcome:
        """Record the release deployed (with the hook objects left behind) and say so."""
        ctx, counts = self._ctx, self._ctx.counts
        unique_hooks = tuple({ref.key: ref for ref in hook_objects}.values())
        deployed = replace(pending, previous_objects=(), hook_objects=unique_hooks)
        await write_inventory(ctx.session, deployed.with_status(ReleaseState.DEPLOYED))
        log.info(
            "release deployed",
            release=pending.release,
            cluster=ctx.session.name,
            revision=pending.revision,
            applied=counts.applied,
            unchanged=counts.unchanged,
            pruned=counts.deleted,
            seconds=ctx.seconds(),
        )
        return ApplyOutcome(
            applied=counts.applied,
            unchanged=counts.unchanged,
            deleted=counts.deleted,
            ready=counts.ready,
        )
