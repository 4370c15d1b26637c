"""Running a release's Helm hooks of one phase: in Helm's order, each waited for to finish.

A hook object that exists already is replaced only when it is ours (or adoptable): its name may
be someone else's object. Delete policies (``before-hook-creation``, ``hook-succeeded``,
``hook-failed``) are Helm's; hook objects left in the cluster are returned for the inventory.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.kit.apply.apply_tiers import hook_order
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.readiness import hook_completion, waits_for
from adapters.kit.apply.release_labels import labelled, owned_by
from adapters.kit.apply.run_context import RunContext
from adapters.kit.apply.waiting import wait_gone, wait_ready
from adapters.kit.model.object_policy import not_owned_detail
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import Hook, HookPhase, Progress, ProgressKind
from adapters.kit.model.records import ErrorDetail

__all__ = ["run_hooks"]

_HOOK_GONE_SECONDS = 30.0


def _phase_hooks(hooks: Sequence[Hook], phase: HookPhase) -> list[Hook]:
    """The hooks of ``phase``, in the order Helm runs them (weight, kind, name)."""
    return sorted(
        (hook for hook in hooks if phase in hook.phases),
        key=lambda h: (h.weight, *hook_order(h.manifest)),
    )


async def _create(ctx: RunContext, hook: Hook, ref: ObjectRef) -> None:
    """Apply the hook's object, replacing an existing one of ours when its policy says so."""
    session = ctx.session
    existing = await session.get_ref(ref)
    unowned = existing is not None and not owned_by(existing, ctx.mesh)
    if unowned and ref.key not in ctx.adoption.keys:
        raise ApplyError(not_owned_detail([ref], ctx.adoption))
    if (
        existing is not None
        and "before-hook-creation" in hook.delete_policies
        and await session.delete(ref)
    ):
        await wait_gone(session, [ref], within_seconds=_HOOK_GONE_SECONDS)
    await session.apply(
        labelled(hook.manifest, ctx.release, ctx.mesh),
        field_manager=ctx.apply_policy.field_manager,
        force=ctx.apply_policy.force_conflicts,
    )


async def _finish(ctx: RunContext, hook: Hook, ref: ObjectRef, phase: HookPhase) -> None:
    """Wait until the hook has finished; HOOK_FAILED (after its failure policy) if it failed."""

    def hook_sink(progress: Progress) -> None:
        # A hook's success is HOOK_COMPLETED, not READY; its failure passes through.
        if progress.kind is ProgressKind.FAILED:
            ctx.sink(progress)

    result = await wait_ready(
        ctx.session,
        [ref] if waits_for(hook.manifest) else [],
        ctx.wait_policy,
        hook_sink,
        within_seconds=max(0.0, ctx.left()),
        rule=hook_completion,
    )
    detail = result.error()
    if detail is None:
        return
    if "hook-failed" in hook.delete_policies:
        await ctx.session.delete(ref)
    raise ApplyError(
        ErrorDetail(
            code="HOOK_FAILED",
            message=f"{phase.value} hook {ref} failed: {detail.message}",
            probable_cause=detail.probable_cause,
            suggested_remediation=detail.suggested_remediation,
        )
    )


async def run_hooks(ctx: RunContext, hooks: Sequence[Hook], phase: HookPhase) -> list[ObjectRef]:
    """Run one phase's hooks in Helm's order; return hook objects left in the cluster."""
    remaining: list[ObjectRef] = []
    for hook in _phase_hooks(hooks, phase):
        ref = ObjectRef.from_manifest(hook.manifest)
        await _create(ctx, hook, ref)
        await _finish(ctx, hook, ref, phase)
        ctx.report(ProgressKind.HOOK_COMPLETED, ref, f"{phase.value} hook {ref} completed")
        if "hook-succeeded" in hook.delete_policies:
            await ctx.session.delete(ref)
        else:
            remaining.append(ref)
    return remaining
