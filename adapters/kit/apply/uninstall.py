"""Uninstalling one release: the steps of `Applier.uninstall`, in order.

pre-delete hooks → the release's objects in uninstall order (or, for a release recorded as
owning fields only, its fields given up) → post-delete hooks → the inventory removed. Objects
marked keep stay, and so do the release's CRDs unless asked otherwise (`crd_removal`: purging is
refused before anything is touched while custom resources of them exist beyond the release's
own, unless forced). No inventory means nothing to do, except CRDs an earlier uninstall kept
when the request asks to remove them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import structlog

from adapters.kit.apply.crd_removal import kept_crds, refuse_over_custom_resources, release_crds
from adapters.kit.apply.deletion import delete_in_order
from adapters.kit.apply.fields_release import release_fields
from adapters.kit.apply.hooks import run_hooks
from adapters.kit.apply.inventory import (
    ReleaseRecord,
    ReleaseState,
    delete_inventory,
    read_inventory,
    write_inventory,
)
from adapters.kit.apply.ownership import owned_keys, report_left_alone
from adapters.kit.apply.run_context import RunContext
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import (
    PURGE_CRDS,
    ApplyOutcome,
    CrdRemoval,
    Hook,
    HookPhase,
    ProgressKind,
    fields_manager,
)

__all__ = ["Uninstall"]

log = structlog.get_logger(__name__)


def _unique(refs: Sequence[ObjectRef]) -> list[ObjectRef]:
    return list({ref.key: ref for ref in refs}.values())


class Uninstall:
    """One uninstall of ``ctx``'s release from ``namespace``, running ``hooks``, removing CRDs
    as ``crds`` says."""

    def __init__(
        self, ctx: RunContext, namespace: str, hooks: Sequence[Hook], crds: CrdRemoval
    ) -> None:
        self._ctx = ctx
        self._namespace = namespace
        self._hooks = hooks
        self._crds = crds

    async def run(self) -> ApplyOutcome:
        """Remove the release; see the module docstring for the steps."""
        ctx = self._ctx
        record = await read_inventory(ctx.session, self._namespace, ctx.release, mesh=ctx.mesh)
        if record is None:
            if self._crds is not CrdRemoval.KEEP:
                return await self._purge_kept_crds()
            log.info("release not installed; nothing to uninstall", release=ctx.release)
            return ApplyOutcome(noop=True)
        # An interrupted upgrade may have left objects of both revisions behind.
        targets = _unique((*record.objects, *record.previous_objects))
        crd_refs = [] if record.ownership_fields_only else release_crds(targets)
        if self._crds is CrdRemoval.PURGE and crd_refs:
            release_objects = (*targets, *record.hook_objects)
            await refuse_over_custom_resources(ctx.session, crd_refs, release_objects)
        await write_inventory(ctx.session, record.with_status(ReleaseState.PENDING_DELETE))
        leftovers = await run_hooks(ctx, self._hooks, HookPhase.PRE_DELETE)
        crds_kept = 0
        if record.ownership_fields_only:
            policy = replace(ctx.apply_policy, field_manager=fields_manager(ctx.release))
            ctx.counts.deleted += await release_fields(ctx, targets, policy, ProgressKind.DELETED)
        else:
            everything = _unique((*targets, *record.hook_objects, *leftovers))
            crds_kept = await self._delete_objects(record, everything, crd_refs)
        for ref in await run_hooks(ctx, self._hooks, HookPhase.POST_DELETE):
            # Nothing will ever delete these later: the release record goes away now.
            await ctx.session.delete(ref)
        await delete_inventory(ctx.session, self._namespace, ctx.release)
        log.info(
            "release uninstalled",
            release=ctx.release,
            cluster=ctx.session.name,
            deleted=ctx.counts.deleted,
            crds_kept=crds_kept,
            seconds=ctx.seconds(),
        )
        return ApplyOutcome(deleted=ctx.counts.deleted, crds_kept=crds_kept)

    async def _delete_objects(
        self, record: ReleaseRecord, everything: Sequence[ObjectRef], crd_refs: Sequence[ObjectRef]
    ) -> int:
        """Delete the release's objects still labelled as its (and those it keeps, reported
        kept); returns how many CRDs were kept."""
        ctx = self._ctx
        crd_keys = {ref.key for ref in crd_refs}
        # Purging overrides a chart's resource-policy keep on its CRDs; keeping them keeps the
        # release's labels on them (a later purge or install finds them).
        keep = record.keep if self._crds is CrdRemoval.KEEP else record.keep - crd_keys
        owned = await owned_keys(ctx.work, everything, ctx.release, ctx.mesh)
        kept = self._keep_crds(crd_refs, owned)
        chosen = [ref for ref in everything if ref.key not in {k.key for k in kept}]
        report_left_alone(
            [r for r in chosen if r.key not in owned and r.key not in keep], ctx.release, ctx.sink
        )
        ctx.counts.deleted = await delete_in_order(
            ctx, [r for r in chosen if r.key in owned or r.key in keep], keep
        )
        return len(kept)

    def _keep_crds(self, crd_refs: Sequence[ObjectRef], owned: set[str]) -> list[ObjectRef]:
        """The release's CRDs that stay (unless ``crds`` removes them), each reported kept."""
        if self._crds is not CrdRemoval.KEEP:
            return []
        kept = [ref for ref in crd_refs if ref.key in owned]
        for ref in kept:
            self._ctx.report(
                ProgressKind.KEPT,
                ref,
                f"{ref} kept: CustomResourceDefinitions stay unless {PURGE_CRDS}=true",
            )
        return kept

    async def _purge_kept_crds(self) -> ApplyOutcome:
        """Delete the CRDs an earlier uninstall of the release kept (found by its labels)."""
        ctx = self._ctx
        kept = await kept_crds(ctx.session, ctx.release, ctx.mesh)
        if not kept:
            log.info("release not installed and no CRDs of it kept", release=ctx.release)
            return ApplyOutcome(noop=True)
        if self._crds is CrdRemoval.PURGE:
            await refuse_over_custom_resources(ctx.session, kept, ())
        deleted = await delete_in_order(ctx, kept, frozenset())
        log.info("kept CRDs purged", release=ctx.release, cluster=ctx.session.name, deleted=deleted)
        return ApplyOutcome(deleted=deleted)
