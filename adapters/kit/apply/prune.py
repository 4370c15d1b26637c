"""Pruning: deleting what the previous revision had and this one does not.

Only objects still labelled as the release's are deleted (another release may have taken one
over; those are left in place and reported), never those the policy keeps, kind by kind in
uninstall order.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.kit.apply.apply_tiers import uninstall_groups
from adapters.kit.apply.ownership import owned_keys, report_left_alone
from adapters.kit.apply.run_context import RunContext
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import ProgressKind

__all__ = ["prune"]


async def prune(
    ctx: RunContext,
    previous: Sequence[ObjectRef],
    current: Sequence[ObjectRef],
    keep: frozenset[str],
) -> int:
    """Delete objects of ``previous`` that ``current`` lacks (never `keep`, and only those still
    labelled as this release's); returns how many existed."""
    wanted = {ref.key for ref in current}
    candidates = [ref for ref in previous if ref.key not in wanted]
    owned = await owned_keys(ctx.work, candidates, ctx.release, ctx.mesh) if candidates else set()
    gone = [ref for ref in candidates if ref.key in owned or ref.key in keep]
    report_left_alone(
        [r for r in candidates if r.key not in owned and r.key not in keep], ctx.release, ctx.sink
    )

    async def prune_one(ref: ObjectRef) -> bool:
        existed = await ctx.session.delete(ref)
        ctx.report(ProgressKind.PRUNED, ref, f"{ref} pruned")
        return existed

    deleted = 0
    for group in uninstall_groups(gone):
        for ref in group:
            if ref.key in keep:
                ctx.report(ProgressKind.KEPT, ref, f"{ref} kept (policy)")
        deleted += sum(await ctx.work.each([r for r in group if r.key not in keep], prune_one))
    return deleted
