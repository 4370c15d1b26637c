"""Deleting a release's objects kind by kind in uninstall order, then waiting until gone.

Objects the policy keeps are reported KEPT and left; the wait covers finalizers (a namespace's
deletion waits for its contents), within the run's remaining budget.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.kit.apply.apply_tiers import uninstall_groups
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.run_context import RunContext
from adapters.kit.apply.waiting import wait_gone
from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.plans import ProgressKind
from adapters.kit.model.records import ErrorDetail

__all__ = ["delete_in_order"]


async def delete_in_order(ctx: RunContext, refs: Sequence[ObjectRef], keep: frozenset[str]) -> int:
    """Delete ``refs`` (not ``keep``, reported kept) kind by kind in uninstall order, then
    wait until they are gone; returns how many were deleted."""

    async def delete_one(ref: ObjectRef) -> ObjectRef | None:
        if not await ctx.session.delete(ref):
            return None
        ctx.report(ProgressKind.DELETED, ref, f"{ref} deleted")
        return ref

    deleted: list[ObjectRef] = []
    for group in uninstall_groups(refs):
        for ref in group:
            if ref.key in keep:
                ctx.report(ProgressKind.KEPT, ref, f"{ref} kept (policy)")
        found = await ctx.work.each([ref for ref in group if ref.key not in keep], delete_one)
        deleted += [ref for ref in found if ref is not None]
    stuck = await wait_gone(ctx.session, deleted, within_seconds=max(0.0, ctx.left()))
    if stuck:
        raise ApplyError(_not_finished(stuck, ctx.wait_policy.timeout_seconds))
    return len(deleted)


def _not_finished(stuck: Sequence[ObjectRef], timeout: float) -> ErrorDetail:
    return ErrorDetail(
        code="DELETE_NOT_FINISHED",
        message=f"{len(stuck)} objects still exist after {timeout:g}s: "
        + ", ".join(str(ref) for ref in stuck[:5]),
        probable_cause="finalizers on these objects (or the namespace) have not completed; "
        "their controller may be gone",
        suggested_remediation="inspect metadata.finalizers of the listed objects, then run the "
        "uninstall again",
    )
