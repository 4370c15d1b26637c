"""Giving up meshplane's fields on objects, which stay: how a fields-only release lets go.

A release recorded as owning fields only (it set fields on objects others created) never
deletes: an empty apply under its field manager hands every field it set back.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.kit.apply.release_labels import ownership_only
from adapters.kit.apply.run_context import RunContext
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import ApplyPolicy, ProgressKind

__all__ = ["release_fields"]


async def release_fields(
    ctx: RunContext, refs: Sequence[ObjectRef], policy: ApplyPolicy, kind: ProgressKind
) -> int:
    """Give up our fields on ``refs`` (empty apply under ``policy``'s field manager), keep the
    objects; each one reported as ``kind``. Returns how many existed."""

    async def release_one(ref: ObjectRef) -> bool:
        if await ctx.session.get_ref(ref) is None:
            return False
        await ctx.session.apply(ownership_only(ref), field_manager=policy.field_manager, force=True)
        ctx.report(kind, ref, f"meshplane's fields removed from {ref}")
        return True

    return sum(await ctx.work.each(list(refs), release_one))
