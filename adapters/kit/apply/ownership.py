"""Which existing objects a release may write or delete, read from their labels.

Before writing, the plan's objects that exist are sorted into the release's own (their
resourceVersions save reading each one again), objects another mesh's release applied (refused)
and unowned ones (adopted only when the request may, `object_policy`). Before deleting, only
objects still labelled as the release's are touched: another release may have taken one over.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.release_labels import owned_by
from adapters.kit.apply.run_context import ClusterWork
from adapters.kit.model.object_policy import not_owned_detail
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import (
    MESH_LABEL,
    RELEASE_LABEL,
    ApplyPlan,
    Progress,
    ProgressKind,
    ProgressSink,
)
from adapters.kit.model.records import ErrorDetail

__all__ = ["owned_keys", "release_versions", "report_left_alone"]

log = structlog.get_logger(__name__)

Group = tuple[str, str, str]
"""(apiVersion, kind, namespace or ""): what one list request covers."""


def _groups(refs: Iterable[ObjectRef]) -> list[Group]:
    return sorted({(ref.api_version, ref.kind, ref.namespace or "") for ref in refs})


async def _listed(work: ClusterWork, refs: Iterable[ObjectRef], selector: str) -> list[KubeObject]:
    """Objects matching ``selector``, one list per kind and namespace of ``refs``."""

    async def list_group(group: Group) -> list[KubeObject]:
        api_version, kind, namespace = group
        return await work.session.list(api_version, kind, namespace or None, selector)

    return [item for items in await work.each(_groups(refs), list_group) for item in items]


@dataclass
class _Found:
    """The plan's objects found by the release listing, sorted by owner."""

    versions: dict[str, str] = field(default_factory=dict)
    taken: list[tuple[ObjectRef, str, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def sort(self, item: KubeObject, plan: ApplyPlan) -> None:
        ref = ObjectRef.from_manifest(item)
        labels = item["metadata"].get("labels") or {}
        owner = str(labels.get(RELEASE_LABEL, ""))
        mesh = str(labels.get(MESH_LABEL, ""))
        if mesh and mesh != plan.mesh:
            self.taken.append((ref, owner, mesh))
            self.seen.add(ref.key)
        elif owned_by(item, plan.mesh):
            self.seen.add(ref.key)
            if owner == plan.release:
                self.versions[ref.key] = str(item["metadata"].get("resourceVersion", ""))


async def release_versions(work: ClusterWork, plan: ApplyPlan) -> dict[str, str]:
    """resourceVersions of the plan's objects that already carry the release label.

    One list of release-labelled objects per (kind, namespace) instead of one read per
    object. An object not found here is new or not yet ours, and applying it adds our labels:
    it changes. A planned object another mesh's release already owns is refused: taking it
    over would let that mesh's delete remove ours, and ours remove theirs. Within one mesh a
    later release may take an object over (routing operations replace each other's routes).
    """
    wanted = {ref.key for ref in plan.refs}
    found = _Found()
    for item in await _listed(work, plan.refs, RELEASE_LABEL):
        if ObjectRef.from_manifest(item).key in wanted:
            found.sort(item, plan)
    if found.taken:
        raise _owned_by_other_mesh(plan, found.taken)
    unseen = [ref for ref in plan.refs if ref.key not in found.seen]
    return found.versions | await _unowned_versions(work, plan, unseen)


async def _unowned_versions(
    work: ClusterWork, plan: ApplyPlan, refs: Sequence[ObjectRef]
) -> dict[str, str]:
    """resourceVersions of ``refs`` (planned objects the release listing did not find) that
    exist and the plan may adopt; an existing one it may not adopt is refused.

    Applying with force would otherwise take over an object someone else created, and the
    release's delete would then remove it: meshplane never adopts unless asked
    (`object_policy` decides what the request may adopt).
    """
    found = await work.each(list(refs), work.session.get_ref)
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
        log.info("object adopted", ref=str(ref), release=plan.release, cluster=work.session.name)
    if refused:
        raise ApplyError(not_owned_detail(refused, plan.adoption))
    return adopted


async def owned_keys(
    work: ClusterWork, refs: Sequence[ObjectRef], release: str, mesh: str
) -> set[str]:
    """Keys of ``refs`` that exist and still carry ``release``'s labels (one list per kind
    and namespace): only these may be deleted; another release may have taken one over."""
    wanted = {ref.key for ref in refs}
    owned: set[str] = set()
    for item in await _listed(work, refs, f"{RELEASE_LABEL}={release}"):
        key = ObjectRef.from_manifest(item).key
        if key in wanted and owned_by(item, mesh, release):
            owned.add(key)
    return owned


def report_left_alone(refs: Iterable[ObjectRef], release: str, sink: ProgressSink) -> None:
    """KEPT for each of ``refs``: no longer the release's, so not deleted."""
    for ref in refs:
        sink(
            Progress(
                kind=ProgressKind.KEPT,
                ref=ref,
                message=f"{ref} left in place: it no longer carries release {release}'s "
                "labels (gone, or taken over)",
            )
        )


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
