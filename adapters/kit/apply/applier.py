"""The apply engine: install, upgrade and uninstall one release in one cluster.

An `Applier` is given a `ClusterSession` and carries out `ApplyPlan`s the way Helm carries out
releases, with server-side apply instead of three-way merges:

install/upgrade: inventory pending → Namespaces → CRDs (wait Established here when custom
resources or hooks need them, else with the workloads) → pre hooks → config/RBAC/Services →
workloads → webhooks → custom resources → wait ready → post hooks → prune what the previous
revision had and this one does not → inventory deployed.

Objects of one tier are applied concurrently (bounded), tiers in order. A plan identical to the
deployed one, with every object present, changes nothing. Every step is reported to the sink;
failures raise `ApplyError`. Cancelling leaves the inventory pending, and the next run resumes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import structlog

from adapters.kit.apply.cluster import UNKNOWN, ClusterSession, Unknown
from adapters.kit.apply.crd_removal import custom_resources_remain_detail, live_custom_resources
from adapters.kit.apply.inventory import (
    ReleaseRecord,
    ReleaseState,
    canonical_json,
    delete_inventory,
    now_text,
    plan_digest,
    read_inventory,
    write_inventory,
)
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.readiness import hook_completion, waits_for
from adapters.kit.apply.waiting import wait_gone, wait_ready
from adapters.kit.model.object_policy import FAILED_PRECONDITION, not_owned_detail
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.ordering import INSTALL_ORDER, UNINSTALL_ORDER
from adapters.kit.model.plans import (
    CREATE_NAMESPACE,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    MESH_LABEL,
    NO_ADOPTION,
    PURGE_CRDS,
    RELEASE_LABEL,
    Adoption,
    ApplyOutcome,
    ApplyPlan,
    ApplyPolicy,
    CrdRemoval,
    Hook,
    HookPhase,
    Progress,
    ProgressKind,
    ProgressSink,
    WaitPolicy,
    fields_manager,
)
from adapters.kit.model.records import ErrorDetail
from serving.input_quoting import quoted

__all__ = [
    "Applier",
    "check_missing_namespaces",
    "labelled",
    "missing_namespaces_detail",
    "owned_by",
    "ownership_only",
    "release_crds",
]

log = structlog.get_logger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")

_RANK = {kind: rank for rank, kind in enumerate(INSTALL_ORDER)}
_UNINSTALL_RANK = {kind: rank for rank, kind in enumerate(UNINSTALL_ORDER)}
_CONFIG_LAST = _RANK["Service"]
_WORKLOADS_LAST = _RANK["CronJob"]
_CRD_WAIT_SECONDS = 60.0
_HOOK_GONE_SECONDS = 30.0
_NAME_SHOWN = 63


def labelled(obj: KubeObject, release: str, mesh: str) -> KubeObject:
    """A copy of ``obj`` carrying meshplane's managed-by, release and mesh labels.

    Pod template labels are left alone: changing them would change selectors and restart pods.
    """
    metadata = dict(obj.get("metadata") or {})
    labels = dict(metadata.get("labels") or {})
    labels[MANAGED_BY_LABEL] = MANAGED_BY_VALUE
    labels[RELEASE_LABEL] = release
    labels[MESH_LABEL] = mesh
    metadata["labels"] = labels
    return {**obj, "metadata": metadata}


def owned_by(obj: KubeObject, mesh: str, release: str | None = None) -> bool:
    """Whether ``obj`` carries meshplane's labels for ``mesh`` (and ``release``, when given).

    An object without a mesh label but with a release label predates mesh labels; release
    names start with their mesh, so the release label alone still names the owner.
    """
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = str(labels.get(RELEASE_LABEL, ""))
    if labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or not owner:
        return False
    if labels.get(MESH_LABEL, mesh) != mesh:
        return False
    return release is None or owner == release


def ownership_only(ref: ObjectRef) -> KubeObject:
    """The empty apply that hands back every field our field manager set on ``ref``."""
    metadata = {"name": ref.name}
    if ref.namespace:
        metadata["namespace"] = ref.namespace
    return {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": metadata}


def _tier(obj: KubeObject) -> int:
    """Apply tier: 0 namespaces, 1 CRDs, 2 config/RBAC/Services, 3 workloads, 4 webhooks and
    other late kinds, 5 custom resources. Within a tier order does not matter."""
    kind = str(obj.get("kind", ""))
    rank = _RANK.get(kind)
    if rank is None:
        return 5
    if rank <= _RANK["Namespace"]:
        return 0
    if kind == "CustomResourceDefinition":
        return 1
    if rank <= _CONFIG_LAST:
        return 2
    if rank <= _WORKLOADS_LAST:
        return 3
    return 4


def _uninstall_groups(refs: Iterable[ObjectRef]) -> list[list[ObjectRef]]:
    """Refs in uninstall order, grouped by kind (custom resources first)."""
    ordered = sorted(
        refs,
        key=lambda r: (
            _UNINSTALL_RANK.get(r.kind, -1),
            "" if r.kind in _UNINSTALL_RANK else r.kind,
        ),
    )
    groups: list[list[ObjectRef]] = []
    for ref in ordered:
        if groups and groups[-1][0].kind == ref.kind:
            groups[-1].append(ref)
        else:
            groups.append([ref])
    return groups


@dataclass
class _Counts:
    applied: int = 0
    unchanged: int = 0
    deleted: int = 0
    ready: int = 0


class Applier:
    """Installs, upgrades and uninstalls releases through one cluster session."""

    def __init__(self, session: ClusterSession, *, concurrency: int = 12) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._session = session
        self._concurrency = concurrency

    async def writable_versions(self, plan: ApplyPlan) -> dict[str, str]:
        """resourceVersions of the plan's existing objects it may write; raises the refusals
        applying would (objects of another mesh, objects it may not adopt). For dry runs."""
        return await self._release_versions(plan)

    async def owned_keys(self, refs: Sequence[ObjectRef], release: str, mesh: str) -> set[str]:
        """Keys of ``refs`` that exist and still carry ``release``'s labels. For dry runs."""
        return await self._owned(refs, release, mesh)

    # -- helpers ----------------------------------------------------------------------------

    async def _each(self, items: Sequence[Item], run: Callable[[Item], Awaitable[T]]) -> list[T]:
        """Run ``run`` over ``items`` concurrently (bounded); the first ApplyError wins."""
        if not items:
            return []
        if len(items) == 1:
            return [await run(items[0])]
        gate = asyncio.Semaphore(self._concurrency)
        results: dict[int, T] = {}

        async def one(index: int, item: Item) -> None:
            async with gate:
                results[index] = await run(item)

        try:
            async with asyncio.TaskGroup() as group:
                for index, item in enumerate(items):
                    group.create_task(one(index, item), name=f"apply-item-{index}")
        except BaseExceptionGroup as failures:
            raise _first_apply_error(failures) from None
        return [results[index] for index in range(len(items))]

    async def _apply_objects(
        self,
        objects: Sequence[KubeObject],
        policy: ApplyPolicy,
        sink: ProgressSink,
        counts: _Counts,
        versions: dict[str, str] | None,
        seen: dict[str, KubeObject] | None = None,
        bodies: Mapping[int, bytes] | None = None,
    ) -> None:
        """Apply concurrently; ``versions`` (key → resourceVersion of what the release already
        has) saves reading each object first; None means read each one. ``seen`` collects the
        server's answers (key → object), the first look of the wait that follows. ``bodies``
        (``id(obj)`` → its JSON) are encodings made earlier, sent instead of encoding again."""

        async def apply_one(obj: KubeObject) -> None:
            ref = ObjectRef.from_manifest(obj)
            previous: str | Unknown | None = UNKNOWN if versions is None else versions.get(ref.key)
            try:
                answer, changed = await self._session.apply(
                    obj,
                    field_manager=policy.field_manager,
                    force=policy.force_conflicts,
                    previous_version=previous,
                    encoded=bodies.get(id(obj)) if bodies is not None else None,
                )
            except ApplyError as exc:
                sink(
                    Progress(
                        kind=ProgressKind.FAILED,
                        ref=ref,
                        reason=exc.detail.code,
                        message=exc.detail.message,
                    )
                )
                raise
            if seen is not None:
                seen[ref.key] = answer
            if changed:
                counts.applied += 1
                sink(Progress(kind=ProgressKind.APPLIED, ref=ref, message=f"{ref} applied"))
            else:
                counts.unchanged += 1
                sink(Progress(kind=ProgressKind.UNCHANGED, ref=ref, message=f"{ref} unchanged"))

        await self._each(objects, apply_one)

    async def _release_versions(self, plan: ApplyPlan) -> dict[str, str]:
        """resourceVersions of the plan's objects that already carry the release label.

        One list of release-labelled objects per (kind, namespace) instead of one read per
        object. An object not found here is new or not yet ours, and applying it adds our labels:
        it changes. A planned object another mesh's release already owns is refused: taking it
        over would let that mesh's delete remove ours, and ours remove theirs. Within one mesh a
        later release may take an object over (routing operations replace each other's routes).
        """
        wanted = {ref.key for ref in plan.refs}
        groups = sorted({(ref.api_version, ref.kind, ref.namespace or "") for ref in plan.refs})

        async def list_group(group: tuple[str, str, str]) -> list[KubeObject]:
            api_version, kind, namespace = group
            return await self._session.list(api_version, kind, namespace or None, RELEASE_LABEL)

        versions: dict[str, str] = {}
        taken: list[tuple[ObjectRef, str, str]] = []
        seen: set[str] = set()
        for items in await self._each(groups, list_group):
            for item in items:
                ref = ObjectRef.from_manifest(item)
                if ref.key not in wanted:
                    continue
                labels = item["metadata"].get("labels") or {}
                owner = str(labels.get(RELEASE_LABEL, ""))
                mesh = str(labels.get(MESH_LABEL, ""))
                if mesh and mesh != plan.mesh:
                    taken.append((ref, owner, mesh))
                    seen.add(ref.key)
                elif owned_by(item, plan.mesh):
                    seen.add(ref.key)
                    if owner == plan.release:
                        versions[ref.key] = str(item["metadata"].get("resourceVersion", ""))
        if taken:
            raise _owned_by_other_mesh(plan, taken)
        versions.update(
            await self._unowned_versions(plan, [r for r in plan.refs if r.key not in seen])
        )
        return versions

    async def _unowned_versions(self, plan: ApplyPlan, refs: Sequence[ObjectRef]) -> dict[str, str]:
        """resourceVersions of ``refs`` (planned objects the release listing did not find) that
        exist and the plan may adopt; an existing one it may not adopt is refused.

        Applying with force would otherwise take over an object someone else created, and the
        release's delete would then remove it: meshplane never adopts unless asked
        (`object_policy` decides what the request may adopt).
        """
        found = await self._each(list(refs), self._session.get_ref)
        refused: list[ObjectRef] = []
        adopted: dict[str, str] = {}
        for ref, current in zip(refs, found, strict=True):
            if current is None:
                continue
            if owned_by(current, plan.mesh):  # labelled meanwhile by another of our releases
                continue
            if ref.key not in plan.adoption.keys:
                refused.append(ref)
                continue
            adopted[ref.key] = str((current.get("metadata") or {}).get("resourceVersion", ""))
            log.info(
                "object adopted", ref=str(ref), release=plan.release, cluster=self._session.name
            )
        if refused:
            raise ApplyError(not_owned_detail(refused, plan.adoption))
        return adopted

    async def _namespace_exists(self, name: str) -> bool:
        return await self._session.get("v1", "Namespace", name) is not None

    async def _missing_namespaces(self, plan: ApplyPlan) -> list[str]:
        """Namespaces the plan writes into (its release's and its objects') that do not exist."""
        wanted = sorted({plan.namespace, *_object_namespaces(plan.objects)})
        found = await self._each(wanted, self._namespace_exists)
        return [name for name, exists in zip(wanted, found, strict=True) if not exists]

    async def _create_namespace(self, name: str, policy: ApplyPolicy) -> None:
        """Create a namespace (bare), e.g. so the inventory has a home."""
        await self._session.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
            field_manager=policy.field_manager,
            force=policy.force_conflicts,
            previous_version=None,
        )
        log.info("release namespace created", namespace=name, cluster=self._session.name)

    async def _wait(
        self,
        refs: Sequence[ObjectRef],
        policy: WaitPolicy,
        sink: ProgressSink,
        counts: _Counts,
        *,
        within_seconds: float,
        seen: dict[str, KubeObject] | None = None,
    ) -> None:
        result = await wait_ready(
            self._session,
            refs,
            policy,
            sink,
            within_seconds=max(0.0, within_seconds),
            observed=seen,
        )
        counts.ready += len(result.ready)
        result.raise_for_failure()

    # -- hooks ------------------------------------------------------------------------------

    async def _run_hooks(
        self,
        hooks: Sequence[Hook],
        phase: HookPhase,
        release: str,
        mesh: str,
        policy: ApplyPolicy,
        wait_policy: WaitPolicy,
        sink: ProgressSink,
        left: Callable[[], float],
        adoption: Adoption = NO_ADOPTION,
    ) -> list[ObjectRef]:
        """Run one phase's hooks in Helm's order; return hook objects left in the cluster.

        A hook object that exists already is replaced only when it is ours (or adoptable):
        its name may be someone else's object.
        """
        chosen = sorted(
            (hook for hook in hooks if phase in hook.phases),
            key=lambda h: (
                h.weight,
                _RANK.get(str(h.manifest.get("kind", "")), len(_RANK)),
                ObjectRef.from_manifest(h.manifest).name,
            ),
        )
        remaining: list[ObjectRef] = []
        for hook in chosen:
            ref = ObjectRef.from_manifest(hook.manifest)
            existing = await self._session.get_ref(ref)
            unowned = existing is not None and not owned_by(existing, mesh)
            if unowned and ref.key not in adoption.keys:
                raise ApplyError(not_owned_detail([ref], adoption))
            if (
                existing is not None
                and "before-hook-creation" in hook.delete_policies
                and await self._session.delete(ref)
            ):
                await wait_gone(self._session, [ref], within_seconds=_HOOK_GONE_SECONDS)
            await self._session.apply(
                labelled(hook.manifest, release, mesh),
                field_manager=policy.field_manager,
                force=policy.force_conflicts,
            )

            def hook_sink(progress: Progress) -> None:
                # A hook's success is HOOK_COMPLETED, not READY; its failure passes through.
                if progress.kind is ProgressKind.FAILED:
                    sink(progress)

            result = await wait_ready(
                self._session,
                [ref] if waits_for(hook.manifest) else [],
                wait_policy,
                hook_sink,
                within_seconds=max(0.0, left()),
                rule=hook_completion,
            )
            detail = result.error()
            if detail is not None:
                if "hook-failed" in hook.delete_policies:
                    await self._session.delete(ref)
                raise ApplyError(
                    ErrorDetail(
                        code="HOOK_FAILED",
                        message=f"{phase.value} hook {ref} failed: {detail.message}",
                        probable_cause=detail.probable_cause,
                        suggested_remediation=detail.suggested_remediation,
                    )
                )
            sink(
                Progress(
                    kind=ProgressKind.HOOK_COMPLETED,
                    ref=ref,
                    message=f"{phase.value} hook {ref} completed",
                )
            )
            if "hook-succeeded" in hook.delete_policies:
                await self._session.delete(ref)
            else:
                remaining.append(ref)
        return remaining

    # -- install / upgrade ------------------------------------------------------------------

    async def _is_noop(
        self,
        plan: ApplyPlan,
        record: ReleaseRecord | None,
        digest: str,
        versions: dict[str, str] | None,
    ) -> bool:
        """The release is deployed from this very plan and every object is still there.

        ``versions`` (the release's objects found by listing) answers presence without reading
        each object; fields-only plans, which label nothing, read each one.
        """
        if record is None or record.status is not ReleaseState.DEPLOYED:
            return False
        if record.plan_digest != digest:
            return False
        refs = plan.refs
        if versions is not None:
            return all(ref.key in versions for ref in refs)
        present = await self._each(refs, self._session.get_ref)
        return all(obj is not None for obj in present)

    async def install_or_upgrade(self, plan: ApplyPlan, sink: ProgressSink) -> ApplyOutcome:
        """Bring the cluster to ``plan``; see the module docstring for the steps."""
        started = time.monotonic()
        session = self._session
        policy = plan.apply_policy
        if plan.ownership_fields_only:
            policy = replace(policy, field_manager=fields_manager(plan.release))
        refs = plan.refs

        async def release_versions() -> dict[str, str] | None:
            # A fields-only plan adds no release label, so only reading each object tells.
            return None if plan.ownership_fields_only else await self._release_versions(plan)

        objects = [
            obj if plan.ownership_fields_only else labelled(obj, plan.release, plan.mesh)
            for obj in plan.objects
        ]

        def encode() -> tuple[dict[int, bytes], str]:
            # Each object is encoded once, for the plan's digest and as its request body.
            encoded = [canonical_json(obj) for obj in objects]
            bodies = {id(obj): body for obj, body in zip(objects, encoded, strict=True)}
            return bodies, plan_digest(plan, encoded)

        # What the cluster holds is read while the objects are encoded (a large plan's JSON
        # takes milliseconds): the reads wait on the server, the encoding on CPU.
        try:
            async with asyncio.TaskGroup() as group:
                digesting = group.create_task(asyncio.to_thread(encode))
                reading = group.create_task(
                    read_inventory(session, plan.namespace, plan.release, mesh=plan.mesh)
                )
                listing = group.create_task(release_versions())
                looking = group.create_task(self._missing_namespaces(plan))
        except BaseExceptionGroup as failures:
            raise _first_apply_error(failures) from None
        (bodies, digest), record = digesting.result(), reading.result()
        versions = listing.result()
        missing = looking.result()
        declared = check_missing_namespaces(plan, missing)
        if await self._is_noop(plan, record, digest, versions):
            for ref in refs:
                sink(Progress(kind=ProgressKind.UNCHANGED, ref=ref, message=f"{ref} unchanged"))
            log.info("release unchanged", release=plan.release, cluster=session.name)
            return ApplyOutcome(unchanged=len(refs), noop=True)

        deployed_before = record is not None and (
            record.status in (ReleaseState.DEPLOYED, ReleaseState.PENDING_UPGRADE)
            or record.revision > 1
        )
        previous = _previous_objects(record)
        state = ReleaseState.PENDING_UPGRADE if deployed_before else ReleaseState.PENDING_INSTALL
        if record is None:
            revision = 1
        else:  # a pending record is resumed at its own revision
            revision = record.revision if record.status.pending else record.revision + 1
        pending = ReleaseRecord(
            release=plan.release,
            namespace=plan.namespace,
            mesh=plan.mesh,
            status=state,
            revision=revision,
            objects=refs,
            previous_objects=previous,
            hook_objects=record.hook_objects if record else (),
            keep=plan.keep | (record.keep if record else frozenset()),
            metadata=dict(plan.metadata),
            plan_digest=digest,
            ownership_fields_only=plan.ownership_fields_only,
            created=record.created if record else now_text(),
            updated=now_text(),
        )
        log.info(
            "release apply started",
            release=plan.release,
            namespace=plan.namespace,
            cluster=session.name,
            state=state.value,
            revision=revision,
            objects=len(refs),
        )
        for name in missing:
            # The release namespace first holds the inventory; declared ones are applied whole.
            if name == plan.namespace or name not in declared:
                await self._create_namespace(name, policy)
        await write_inventory(session, pending)

        deadline = started + plan.wait_policy.timeout_seconds

        def left() -> float:
            return deadline - time.monotonic()

        counts = _Counts()
        tiers: dict[int, list[KubeObject]] = {}
        for obj in objects:
            tiers.setdefault(_tier(obj), []).append(obj)

        await self._apply_objects(tiers.get(0, []), policy, sink, counts, versions, bodies=bodies)
        crds = tiers.get(1, [])
        established: dict[str, KubeObject] = {}
        await self._apply_objects(crds, policy, sink, counts, versions, established, bodies=bodies)

        async def wait_established() -> None:
            await self._wait(
                [ObjectRef.from_manifest(obj) for obj in crds],
                plan.wait_policy,
                sink,
                counts,
                within_seconds=min(_CRD_WAIT_SECONDS, left()),
                seen=established,
            )

        # Only custom resources (and hooks that are ones) need their CRDs served first; a plan
        # without any waits for the CRDs with its workloads (a busy API server may take
        # seconds to establish each).
        crds_first = bool(crds) and (
            bool(tiers.get(5)) or any(_tier(hook.manifest) == 5 for hook in plan.hooks)
        )
        if crds_first:
            await wait_established()

        pre = HookPhase.PRE_UPGRADE if deployed_before else HookPhase.PRE_INSTALL
        post = HookPhase.POST_UPGRADE if deployed_before else HookPhase.POST_INSTALL
        hook_objects = list(pending.hook_objects)

        async def run_hooks(phase: HookPhase) -> list[ObjectRef]:
            return await self._run_hooks(
                plan.hooks,
                phase,
                plan.release,
                plan.mesh,
                policy,
                plan.wait_policy,
                sink,
                left,
                plan.adoption,
            )

        hook_objects += await run_hooks(pre)

        for tier in (2, 3):
            await self._apply_objects(
                tiers.get(tier, []), policy, sink, counts, versions, bodies=bodies
            )

        def waitable(*chosen: int) -> list[ObjectRef]:
            if not plan.wait_policy.wait_for_ready:
                return []
            return [
                ObjectRef.from_manifest(obj)
                for tier in chosen
                for obj in tiers.get(tier, [])
                if waits_for(obj)
            ]

        # Workloads start becoming ready while webhooks and custom resources are applied.
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(
                    self._wait(
                        waitable(0, 2, 3), plan.wait_policy, sink, counts, within_seconds=left()
                    ),
                    name=f"wait-ready {plan.release}",
                )
                if crds and not crds_first and plan.wait_policy.wait_for_ready:
                    group.create_task(wait_established(), name=f"wait-crds {plan.release}")
                for tier in (4, 5):
                    await self._apply_objects(
                        tiers.get(tier, []), policy, sink, counts, versions, bodies=bodies
                    )
                await self._wait(
                    waitable(4, 5), plan.wait_policy, sink, counts, within_seconds=left()
                )
        except BaseExceptionGroup as failures:
            raise _first_apply_error(failures) from None

        hook_objects += await run_hooks(post)

        if policy.prune and not plan.ownership_fields_only:
            counts.deleted += await self._prune(plan, previous, refs, pending.keep, sink)
        elif plan.ownership_fields_only:
            counts.deleted += await self._release_fields(
                [ref for ref in previous if ref.key not in {r.key for r in refs}],
                policy,
                sink,
                ProgressKind.PRUNED,
            )

        unique_hooks = tuple({ref.key: ref for ref in hook_objects}.values())
        await write_inventory(
            session,
            replace(pending, previous_objects=(), hook_objects=unique_hooks).with_status(
                ReleaseState.DEPLOYED
            ),
        )
        log.info(
            "release deployed",
            release=plan.release,
            cluster=session.name,
            revision=revision,
            applied=counts.applied,
            unchanged=counts.unchanged,
            pruned=counts.deleted,
            seconds=round(time.monotonic() - started, 3),
        )
        return ApplyOutcome(
            applied=counts.applied,
            unchanged=counts.unchanged,
            deleted=counts.deleted,
            ready=counts.ready,
        )

    async def _owned(self, refs: Sequence[ObjectRef], release: str, mesh: str) -> set[str]:
        """Keys of ``refs`` that exist and still carry ``release``'s labels (one list per kind
        and namespace): only these may be deleted; another release may have taken one over."""
        groups = sorted({(ref.api_version, ref.kind, ref.namespace or "") for ref in refs})
        selector = f"{RELEASE_LABEL}={release}"

        async def list_group(group: tuple[str, str, str]) -> list[KubeObject]:
            api_version, kind, namespace = group
            return await self._session.list(api_version, kind, namespace or None, selector)

        wanted = {ref.key for ref in refs}
        owned: set[str] = set()
        for items in await self._each(groups, list_group):
            for item in items:
                key = ObjectRef.from_manifest(item).key
                if key in wanted and owned_by(item, mesh, release):
                    owned.add(key)
        return owned

    def _left_alone(self, refs: Iterable[ObjectRef], release: str, sink: ProgressSink) -> None:
        for ref in refs:
            sink(
                Progress(
                    kind=ProgressKind.KEPT,
                    ref=ref,
                    message=f"{ref} left in place: it no longer carries release {release}'s "
                    "labels (gone, or taken over)",
                )
            )

    async def _prune(
        self,
        plan: ApplyPlan,
        previous: Sequence[ObjectRef],
        current: Sequence[ObjectRef],
        keep: frozenset[str],
        sink: ProgressSink,
    ) -> int:
        """Delete objects the previous revision had and this plan does not (never `keep`, and
        only those still labelled as this release's)."""
        wanted = {ref.key for ref in current}
        candidates = [ref for ref in previous if ref.key not in wanted]
        owned = await self._owned(candidates, plan.release, plan.mesh) if candidates else set()
        gone = [ref for ref in candidates if ref.key in owned or ref.key in keep]
        self._left_alone(
            [r for r in candidates if r.key not in owned and r.key not in keep], plan.release, sink
        )
        deleted = 0
        for group in _uninstall_groups(gone):
            kept = [ref for ref in group if ref.key in keep]
            for ref in kept:
                sink(Progress(kind=ProgressKind.KEPT, ref=ref, message=f"{ref} kept (policy)"))

            async def prune_one(ref: ObjectRef) -> bool:
                existed = await self._session.delete(ref)
                sink(Progress(kind=ProgressKind.PRUNED, ref=ref, message=f"{ref} pruned"))
                return existed

            results = await self._each([ref for ref in group if ref.key not in keep], prune_one)
            deleted += sum(results)
        return deleted

    async def _release_fields(
        self,
        refs: Sequence[ObjectRef],
        policy: ApplyPolicy,
        sink: ProgressSink,
        kind: ProgressKind,
    ) -> int:
        """Give up our fields on ``refs`` (empty apply under our field manager), keep objects."""

        async def release_one(ref: ObjectRef) -> bool:
            if await self._session.get_ref(ref) is None:
                return False
            await self._session.apply(
                ownership_only(ref), field_manager=policy.field_manager, force=True
            )
            sink(Progress(kind=kind, ref=ref, message=f"meshplane's fields removed from {ref}"))
            return True

        return sum(await self._each(list(refs), release_one))

    # -- uninstall --------------------------------------------------------------------------

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
        started = time.monotonic()
        wait_policy = wait_policy or WaitPolicy()
        policy = apply_policy or ApplyPolicy()
        session = self._session
        record = await read_inventory(session, namespace, release, mesh=mesh)
        deadline = started + wait_policy.timeout_seconds

        def left() -> float:
            return deadline - time.monotonic()

        if record is None:
            if crds is not CrdRemoval.KEEP:
                return await self._purge_kept_crds(release, mesh, crds, sink, wait_policy, left)
            log.info("release not installed; nothing to uninstall", release=release)
            return ApplyOutcome(noop=True)

        # An interrupted upgrade may have left objects of both revisions behind.
        targets = list(
            {ref.key: ref for ref in (*record.objects, *record.previous_objects)}.values()
        )
        crd_refs = [] if record.ownership_fields_only else release_crds(targets)
        if crds is CrdRemoval.PURGE and crd_refs:
            await self.refuse_over_custom_resources(crd_refs, (*targets, *record.hook_objects))
        await write_inventory(session, record.with_status(ReleaseState.PENDING_DELETE))
        counts = _Counts()
        kept_crds: list[ObjectRef] = []
        leftovers = await self._run_hooks(
            hooks, HookPhase.PRE_DELETE, release, mesh, policy, wait_policy, sink, left
        )

        if record.ownership_fields_only:
            counts.deleted += await self._release_fields(
                targets,
                replace(policy, field_manager=fields_manager(release)),
                sink,
                ProgressKind.DELETED,
            )
        else:
            everything = list(
                {r.key: r for r in (*targets, *record.hook_objects, *leftovers)}.values()
            )
            crd_keys = {ref.key for ref in crd_refs}
            # Purging overrides a chart's resource-policy keep on its CRDs; keeping them
            # keeps the release's labels on them (a later purge or install finds them).
            keep = record.keep - crd_keys if crds is not CrdRemoval.KEEP else record.keep
            owned = await self._owned(everything, release, mesh)
            if crds is CrdRemoval.KEEP:
                kept_crds = [ref for ref in crd_refs if ref.key in owned]
                for ref in kept_crds:
                    sink(
                        Progress(
                            kind=ProgressKind.KEPT,
                            ref=ref,
                            message=f"{ref} kept: CustomResourceDefinitions stay unless "
                            f"{PURGE_CRDS}=true",
                        )
                    )
            chosen = [r for r in everything if r.key not in {k.key for k in kept_crds}]
            self._left_alone(
                [r for r in chosen if r.key not in owned and r.key not in keep], release, sink
            )
            counts.deleted = await self._delete_in_order(
                [r for r in chosen if r.key in owned or r.key in keep],
                keep,
                sink,
                wait_policy,
                left,
            )

        post_leftovers = await self._run_hooks(
            hooks, HookPhase.POST_DELETE, release, mesh, policy, wait_policy, sink, left
        )
        for ref in post_leftovers:
            # Nothing will ever delete these later: the release record goes away now.
            await session.delete(ref)
        await delete_inventory(session, namespace, release)
        log.info(
            "release uninstalled",
            release=release,
            cluster=session.name,
            deleted=counts.deleted,
            crds_kept=len(kept_crds),
            seconds=round(time.monotonic() - started, 3),
        )
        return ApplyOutcome(deleted=counts.deleted, crds_kept=len(kept_crds))

    async def refuse_over_custom_resources(
        self, crds: Sequence[ObjectRef], release_objects: Sequence[ObjectRef]
    ) -> None:
        """FAILED_PRECONDITION while custom resources of ``crds`` exist beyond the release's
        (``release_objects``). For uninstall and dry runs."""
        counts = await live_custom_resources(self._session, crds, excluded=release_objects)
        if counts:
            raise ApplyError(custom_resources_remain_detail(counts))

    async def _purge_kept_crds(
        self,
        release: str,
        mesh: str,
        crds: CrdRemoval,
        sink: ProgressSink,
        wait_policy: WaitPolicy,
        left: Callable[[], float],
    ) -> ApplyOutcome:
        """Delete the CRDs an earlier uninstall of ``release`` kept (found by its labels)."""
        kept = await self.kept_crds(release, mesh)
        if not kept:
            log.info("release not installed and no CRDs of it kept", release=release)
            return ApplyOutcome(noop=True)
        if crds is CrdRemoval.PURGE:
            await self.refuse_over_custom_resources(kept, ())
        deleted = await self._delete_in_order(kept, frozenset(), sink, wait_policy, left)
        log.info("kept CRDs purged", release=release, cluster=self._session.name, deleted=deleted)
        return ApplyOutcome(deleted=deleted)

    async def kept_crds(self, release: str, mesh: str) -> list[ObjectRef]:
        """CRDs an earlier uninstall of ``release`` kept: still labelled as its, for ``mesh``.
        For uninstall and dry runs."""
        labelled_crds = await self._session.list(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            f"{RELEASE_LABEL}={release}",
        )
        return [
            ObjectRef.from_manifest(crd)
            for crd in labelled_crds
            if owned_by(crd, mesh, release)
            and not (crd.get("metadata") or {}).get("deletionTimestamp")
        ]

    async def _delete_in_order(
        self,
        refs: Sequence[ObjectRef],
        keep: frozenset[str],
        sink: ProgressSink,
        wait_policy: WaitPolicy,
        left: Callable[[], float],
    ) -> int:
        """Delete ``refs`` (not ``keep``, reported kept) kind by kind in uninstall order, then
        wait until they are gone; returns how many were deleted."""
        deleted: list[ObjectRef] = []
        for group in _uninstall_groups(refs):
            for ref in group:
                if ref.key in keep:
                    sink(Progress(kind=ProgressKind.KEPT, ref=ref, message=f"{ref} kept (policy)"))

            async def delete_one(ref: ObjectRef) -> ObjectRef | None:
                if not await self._session.delete(ref):
                    return None
                sink(Progress(kind=ProgressKind.DELETED, ref=ref, message=f"{ref} deleted"))
                return ref

            found = await self._each([ref for ref in group if ref.key not in keep], delete_one)
            deleted += [ref for ref in found if ref is not None]
        stuck = await wait_gone(self._session, deleted, within_seconds=max(0.0, left()))
        if stuck:
            raise ApplyError(
                ErrorDetail(
                    code="DELETE_NOT_FINISHED",
                    message=f"{len(stuck)} objects still exist after "
                    f"{wait_policy.timeout_seconds:g}s: "
                    + ", ".join(str(ref) for ref in stuck[:5]),
                    probable_cause="finalizers on these objects (or the namespace) have not "
                    "completed; their controller may be gone",
                    suggested_remediation="inspect metadata.finalizers of the listed objects, "
                    "then run the uninstall again",
                )
            )
        return len(deleted)


def release_crds(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """The CustomResourceDefinitions among ``refs``."""
    return [ref for ref in refs if ref.kind == "CustomResourceDefinition"]


def _object_namespaces(objects: Iterable[KubeObject]) -> set[str]:
    names: set[str] = set()
    for obj in objects:
        namespace = (obj.get("metadata") or {}).get("namespace")
        if isinstance(namespace, str) and namespace:
            names.add(namespace)
    return names


def _declared_namespaces(objects: Iterable[KubeObject]) -> set[str]:
    return {
        str((obj.get("metadata") or {}).get("name", ""))
        for obj in objects
        if obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1"
    }


def check_missing_namespaces(plan: ApplyPlan, missing: Iterable[str]) -> set[str]:
    """Raise FAILED_PRECONDITION when the plan writes into ``missing`` namespaces it was not
    asked to create (`ApplyPlan.create_namespaces`); returns the namespaces the plan's own
    Namespace objects create, which count as asked for (a fields-only plan creates none: it
    only sets fields on objects that exist)."""
    declared = set() if plan.ownership_fields_only else _declared_namespaces(plan.objects)
    refused = sorted(name for name in missing if name not in declared)
    if refused and not plan.create_namespaces:
        raise ApplyError(missing_namespaces_detail(refused))
    return declared


def missing_namespaces_detail(names: Sequence[str]) -> ErrorDetail:
    """The refusal to write into namespaces that do not exist (FAILED_PRECONDITION)."""
    shown = ", ".join(quoted(name, _NAME_SHOWN) for name in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    subject = (
        f"namespace {shown} does not" if len(names) == 1 else f"namespaces {shown}{more} do not"
    )
    return ErrorDetail(
        code=FAILED_PRECONDITION,
        message=f"{subject} exist; pass --create-namespace (parameters.{CREATE_NAMESPACE}=true) "
        "to create it",
        probable_cause="a typo in the namespace, or it was never created; only install creates "
        "its own namespace",
        suggested_remediation=f"create the namespace first (kubectl create namespace), or send "
        f"parameters.{CREATE_NAMESPACE}=true",
    )


def _first_apply_error(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to surface from concurrent steps: the first ApplyError, else the first."""
    flat: list[BaseException] = []
    pending: list[BaseException] = [failures]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            flat.append(current)
    return next((exc for exc in flat if isinstance(exc, ApplyError)), flat[0])


def _owned_by_other_mesh(
    plan: ApplyPlan, taken: Sequence[tuple[ObjectRef, str, str]]
) -> ApplyError:
    """The refusal to take over objects another release applied, naming that release."""
    owners = sorted({(mesh, owner) for _, owner, mesh in taken})
    named = ", ".join(f"{owner} (mesh {mesh})" for mesh, owner in owners)
    objects = ", ".join(str(ref) for ref, _, _ in taken[:5])
    more = f" and {len(taken) - 5} more" if len(taken) > 5 else ""
    return ApplyError(
        ErrorDetail(
            code="OBJECT_OWNED_BY_OTHER_MESH",
            message=f"release {plan.release} (mesh {plan.mesh}) would take over {objects}{more}, "
            f"which release {named} applied",
            probable_cause="two meshes' operations (often the same sample) write objects of the "
            "same name in the same namespace",
            suggested_remediation=f"apply this operation in another namespace, or delete release "
            f"{named} first with its adapter",
        )
    )


def _previous_objects(record: ReleaseRecord | None) -> tuple[ObjectRef, ...]:
    """Objects that may be in the cluster from earlier runs (pruned if the plan drops them)."""
    if record is None:
        return ()
    merged = {ref.key: ref for ref in (*record.previous_objects, *record.objects)}
    return tuple(merged.values())
