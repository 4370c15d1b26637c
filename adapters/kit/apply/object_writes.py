"""Server-side applying one tier's objects at once, each reported APPLIED or UNCHANGED.

What the release already has (key → resourceVersion, from `ownership.release_versions`) saves
reading each object before its write; the bodies encoded for the plan's digest are sent as they
are rather than encoded again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adapters.kit.apply.cluster import UNKNOWN, Unknown
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.run_context import RunContext
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import Progress, ProgressKind

__all__ = ["ObjectWriter"]


@dataclass(frozen=True, kw_only=True)
class ObjectWriter:
    """Applies objects of one run: ``versions`` None means read each object first; ``bodies``
    (``id(obj)`` → its JSON) are encodings made earlier."""

    ctx: RunContext
    versions: dict[str, str] | None
    bodies: Mapping[int, bytes] = field(default_factory=dict)

    async def apply(
        self, objects: Sequence[KubeObject], seen: dict[str, KubeObject] | None = None
    ) -> None:
        """Apply ``objects`` concurrently; ``seen`` collects the server's answers (key →
        object), the first look of the wait that follows."""

        async def apply_one(obj: KubeObject) -> None:
            answer, changed = await self._write(obj)
            ref = ObjectRef.from_manifest(obj)
            if seen is not None:
                seen[ref.key] = answer
            if changed:
                self.ctx.counts.applied += 1
                self.ctx.report(ProgressKind.APPLIED, ref, f"{ref} applied")
            else:
                self.ctx.counts.unchanged += 1
                self.ctx.report(ProgressKind.UNCHANGED, ref, f"{ref} unchanged")

        await self.ctx.work.each(objects, apply_one)

    async def _write(self, obj: KubeObject) -> tuple[KubeObject, bool]:
        """One server-side apply; a refusal is reported FAILED before it is raised."""
        ref = ObjectRef.from_manifest(obj)
        policy = self.ctx.apply_policy
        previous: str | Unknown | None = (
            UNKNOWN if self.versions is None else self.versions.get(ref.key)
        )
        try:
            return await self.ctx.session.apply(
                obj,
                field_manager=policy.field_manager,
                force=policy.force_conflicts,
                previous_version=previous,
                encoded=self.bodies.get(id(obj)),
            )
        except ApplyError as exc:
            self.ctx.sink(
                Progress(
                    kind=ProgressKind.FAILED,
                    ref=ref,
                    reason=exc.detail.code,
                    message=exc.detail.message,
                )
            )
            raise
