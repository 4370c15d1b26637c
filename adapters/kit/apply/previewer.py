"""Dry runs: what installing, upgrading or uninstalling one release would change, changing nothing.

A `Previewer` walks the same plan the `Applier` would carry out and sends each write with
``dryRun=All``: the API server validates, defaults and admits it as it would the real write and
answers with the object it would store. An object that does not exist would be created; one
whose fields meshplane manages differ in the answer (`managed_fields`) would change; objects the
previous revision had and the plan drops would be pruned; an uninstall would delete the
release's objects. Refusals the real apply makes (objects of another mesh, objects it may not
adopt, a write the server rejects) are raised as the same `ApplyError`.

Two writes cannot be checked by the server before the objects they depend on exist: objects in
a namespace the operation creates, and custom resources whose CustomResourceDefinition it
creates. They are reported as created, with a message saying so. The release inventory Secret
is not listed, and hooks are reported as the objects they create (they do not run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.crd_removal import release_crds
from adapters.kit.apply.inventory import ReleaseRecord, read_inventory
from adapters.kit.apply.kube_errors import ApplyError, kind_not_installed_detail
from adapters.kit.apply.namespaces import check_missing_namespaces
from adapters.kit.apply.release_labels import labelled
from adapters.kit.model.managed_fields import changed_fields
from adapters.kit.model.object_changes import MAX_CHANGED_FIELDS, ChangeAction, ObjectChange
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.ordering import UNINSTALL_ORDER
from adapters.kit.model.plans import ApplyPlan, ApplyPolicy, CrdRemoval, HookPhase, fields_manager

__all__ = ["Preview", "Previewer"]

Item = TypeVar("Item")
Result = TypeVar("Result")

_UNINSTALL_RANK = {kind: rank for rank, kind in enumerate(UNINSTALL_ORDER)}
_FIELDS_RELEASED = "meshplane's fields would be removed; the object stays"


@dataclass(frozen=True, kw_only=True)
class Preview:
    """What one release's operation would do in one cluster."""

    changes: tuple[ObjectChange, ...] = ()
    unchanged: int = 0


def _unique(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    return list({ref.key: ref for ref in refs}.values())


def _joined(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


class Previewer:
    """Dry runs of installs, upgrades and uninstalls through one cluster session."""

    def __init__(self, session: ClusterSession, *, concurrency: int = 12) -> None:
        self._session = session
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._applier = Applier(session, concurrency=max(1, concurrency))

    async def _all(
        self, items: Sequence[Item], run: Callable[[Item], Awaitable[Result]]
    ) -> list[Result]:
        """``run`` over ``items``, a bounded number at once, results in order; a failure of any
        (the first ApplyError before others) is raised once all have ended."""

        async def gated(item: Item) -> Result:
            async with self._gate:
                return await run(item)

        answers = await asyncio.gather(*(gated(item) for item in items), return_exceptions=True)
        failures = [a for a in answers if isinstance(a, BaseException)]
        if failures:
            raise next((f for f in failures if isinstance(f, ApplyError)), failures[0])
        return [a for a in answers if not isinstance(a, BaseException)]

    async def _missing_namespaces(self, names: Iterable[str]) -> set[str]:
        wanted = sorted(set(names) - {""})
        found = await self._all(wanted, lambda n: self._session.get("v1", "Namespace", n))
        return {name for name, obj in zip(wanted, found, strict=True) if obj is None}

    # -- install / upgrade ------------------------------------------------------------------

    async def install_or_upgrade(self, plan: ApplyPlan) -> Preview:
        """What `Applier.install_or_upgrade` would change for ``plan``."""
        policy = plan.apply_policy
        if plan.ownership_fields_only:
            policy = replace(policy, field_manager=fields_manager(plan.release))
        else:
            await self._applier.writable_versions(plan)
        record = await read_inventory(self._session, plan.namespace, plan.release, mesh=plan.mesh)
        writes = _writes(plan, record is not None and record.deployed_before)
        missing = await self._missing_namespaces(
            [plan.namespace, *(ObjectRef.from_manifest(o).namespace or "" for o, _ in writes)]
        )
        # Past the check, the apply creates every missing namespace: bare, unless the plan
        # declares it (then it is one of the writes).
        declared = check_missing_namespaces(plan, missing)
        changes = _namespace_changes(plan, missing, declared)
        dry = _DryWrites(
            session=self._session,
            policy=policy,
            planned_kinds=_planned_kinds(plan),
            missing=missing,
        )
        found = await self._all(writes, dry.change)
        changes += [change for change in found if change is not None]
        unchanged = sum(1 for change in found if change is None)
        changes += await self._dropped(plan, record, policy)
        return Preview(changes=tuple(changes), unchanged=unchanged)

    async def _dropped(
        self, plan: ApplyPlan, record: ReleaseRecord | None, policy: ApplyPolicy
    ) -> list[ObjectChange]:
        """What becomes of objects earlier revisions had and the plan drops: pruned, or (a
        fields-only plan) their fields given up."""
        previous = record.objects_in_cluster if record else ()
        wanted = {ref.key for ref in plan.refs}
        dropped = [ref for ref in previous if ref.key not in wanted]
        if dropped and plan.ownership_fields_only:
            return await self._fields_released(dropped)
        if dropped and policy.prune:
            keep = plan.keep | (record.keep if record else frozenset())
            return await self._deletes(dropped, plan.release, plan.mesh, keep, ChangeAction.PRUNE)
        return []

    # -- uninstall --------------------------------------------------------------------------

    async def uninstall(
        self, release: str, namespace: str, *, mesh: str, crds: CrdRemoval = CrdRemoval.KEEP
    ) -> Preview:
        """What `Applier.uninstall` would delete (nothing when the release is not installed,
        but CRDs an earlier uninstall kept when ``crds`` removes them), refused as it would be
        (`crd_removal`)."""
        record = await read_inventory(self._session, namespace, release, mesh=mesh)
        if record is None:
            if crds is CrdRemoval.KEEP:
                return Preview()
            kept = await self._applier.kept_crds(release, mesh)
            if crds is CrdRemoval.PURGE:
                await self._applier.refuse_over_custom_resources(kept, ())
            return Preview(
                changes=tuple(
                    await self._deletes(kept, release, mesh, frozenset(), ChangeAction.DELETE)
                )
            )
        targets = _unique((*record.objects, *record.previous_objects))
        if record.ownership_fields_only:
            return Preview(changes=tuple(await self._fields_released(targets)))
        everything = _unique((*targets, *record.hook_objects))
        crd_keys = {ref.key for ref in release_crds(targets)}
        if crds is CrdRemoval.PURGE and crd_keys:
            await self._applier.refuse_over_custom_resources(release_crds(targets), everything)
        keep = record.keep | crd_keys if crds is CrdRemoval.KEEP else record.keep - crd_keys
        deletes = await self._deletes(everything, release, mesh, keep, ChangeAction.DELETE)
        return Preview(changes=tuple(deletes), unchanged=len(everything) - len(deletes))

    async def _deletes(
        self,
        refs: Sequence[ObjectRef],
        release: str,
        mesh: str,
        keep: frozenset[str],
        action: ChangeAction,
    ) -> list[ObjectChange]:
        """Dry-run deletes of the ``refs`` still labelled as ``release``'s (never ``keep``), in
        uninstall order."""
        owned = await self._applier.owned_keys(refs, release, mesh)
        doomed = sorted(
            (ref for ref in refs if ref.key in owned and ref.key not in keep),
            key=lambda r: (_UNINSTALL_RANK.get(r.kind, -1), r.kind, r.namespace or "", r.name),
        )

        async def delete(ref: ObjectRef) -> bool:
            return await self._session.delete(ref, dry_run=True)

        existed = await self._all(doomed, delete)
        return [
            ObjectChange(action=action, ref=ref)
            for ref, there in zip(doomed, existed, strict=True)
            if there
        ]

    async def _fields_released(self, refs: Sequence[ObjectRef]) -> list[ObjectChange]:
        """A fields-only release gives its fields up instead of deleting: an update each."""
        present: list[Any] = await self._all(refs, self._session.get_ref)
        return [
            ObjectChange(action=ChangeAction.UPDATE, ref=ref, message=_FIELDS_RELEASED)
            for ref, obj in zip(refs, present, strict=True)
            if obj is not None
        ]


Write = tuple[KubeObject, str]
"""An object the apply would write, and a note on it (which hook it is)."""


def _writes(plan: ApplyPlan, upgrade: bool) -> list[Write]:
    """The plan's objects, then its hooks of the phases the apply would run, as it writes them."""

    def mine(obj: KubeObject) -> KubeObject:
        return obj if plan.ownership_fields_only else labelled(obj, plan.release, plan.mesh)

    phases = (
        (HookPhase.PRE_UPGRADE, HookPhase.POST_UPGRADE)
        if upgrade
        else (HookPhase.PRE_INSTALL, HookPhase.POST_INSTALL)
    )
    writes: list[Write] = [(mine(obj), "") for obj in plan.objects]
    writes += [
        (mine(hook.manifest), f"{phase.value} hook")
        for phase in phases
        for hook in plan.hooks
        if phase in hook.phases
    ]
    return writes


def _planned_kinds(plan: ApplyPlan) -> set[tuple[str, str]]:
    """(group, kind) of the custom resources whose CRDs the plan creates."""
    return {
        (str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", "")))
        for obj in plan.objects
        if obj.get("kind") == "CustomResourceDefinition"
        for spec in [obj.get("spec") or {}]
    }


def _namespace_changes(
    plan: ApplyPlan, missing: Iterable[str], declared: set[str]
) -> list[ObjectChange]:
    """The bare namespaces the apply would create (declared ones are among the writes)."""
    return [
        ObjectChange(
            action=ChangeAction.CREATE,
            ref=ObjectRef(api_version="v1", kind="Namespace", namespace=None, name=name),
            message="the release's namespace"
            if name == plan.namespace
            else "asked for (create-namespace)",
        )
        for name in sorted(missing)
        if name not in declared
    ]


@dataclass(frozen=True, kw_only=True)
class _DryWrites:
    """How one install's writes are dry-run. Writes into what the operation itself creates (a
    namespace in ``missing``, a kind in ``planned_kinds``) cannot be checked by the server."""

    session: ClusterSession
    policy: ApplyPolicy
    planned_kinds: set[tuple[str, str]]
    missing: set[str]

    async def _unchecked(self, ref: ObjectRef) -> str | None:
        """Why the server cannot check a write of ``ref`` (None: it can)."""
        resource = await self.session.resource_for(ref.api_version, ref.kind)
        if resource is None:
            if (ref.group, ref.kind) not in self.planned_kinds:
                raise ApplyError(kind_not_installed_detail(ref))
            return "its CustomResourceDefinition is created by this operation"
        namespace = ref.namespace if resource.namespaced else None
        if namespace in self.missing:
            return f"namespace {namespace} is created by this operation"
        return None

    async def change(self, write: Write) -> ObjectChange | None:
        """What writing ``write`` would change (None: nothing)."""
        obj, note = write
        ref = ObjectRef.from_manifest(obj)
        unchecked = await self._unchecked(ref)
        if unchecked is not None:
            message = _joined(note, f"not checked by the API server: {unchecked}")
            return ObjectChange(action=ChangeAction.CREATE, ref=ref, message=message)
        live = await self.session.get_ref(ref)
        answer, _ = await self.session.apply(
            obj,
            field_manager=self.policy.field_manager,
            force=self.policy.force_conflicts,
            previous_version=None,
            dry_run=True,
        )
        if live is None:
            return ObjectChange(action=ChangeAction.CREATE, ref=ref, message=note)
        changed = changed_fields(live, answer, self.policy.field_manager)
        if not changed:
            return None
        return ObjectChange(
            action=ChangeAction.UPDATE,
            ref=ref,
            changed_fields=changed[:MAX_CHANGED_FIELDS],
            message=note,
        )
