"""Removing a release's CustomResourceDefinitions: only when asked, and not over users' data.

Deleting a CRD deletes every custom resource of it, in every namespace: an uninstall that took
Istio's CRDs took each VirtualService and Gateway users wrote with them. So an uninstall keeps
them (`plans.CrdRemoval.KEEP`) unless the request sends ``purge-crds=true``, and even then it is
refused (FAILED_PRECONDITION, counting what would go, per kind and namespace) while custom
resources of them exist that are not the release's own, unless ``purge-crds=force``.

CRDs an uninstall kept still carry the release's labels, so a later ``purge-crds`` uninstall
finds them by label once the release record is gone, and a later install takes them back as its
own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.release_labels import owned_by
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import PURGE_CRDS, RELEASE_LABEL
from adapters.kit.model.records import ErrorDetail

__all__ = [
    "CRD_API_VERSION",
    "CRD_KIND",
    "CustomResourceCount",
    "custom_resources_remain_detail",
    "kept_crds",
    "kept_crds_note",
    "live_custom_resources",
    "refuse_over_custom_resources",
    "release_crds",
]

CRD_API_VERSION = "apiextensions.k8s.io/v1"
CRD_KIND = "CustomResourceDefinition"
_KINDS_SHOWN = 3

Identity = tuple[str, str, str, str]
"""(group, kind, namespace, name): an object whatever API version names it."""


def identity(ref: ObjectRef) -> Identity:
    """``ref`` without its version (a CRD serves the same objects at each version)."""
    return ref.group, ref.kind, ref.namespace or "", ref.name


@dataclass(frozen=True, kw_only=True)
class CustomResourceCount:
    """Custom resources of one CRD that deleting it would delete."""

    group: str
    kind: str
    objects: int
    namespaces: int
    """Distinct namespaces holding them (0 for a cluster-scoped kind)."""

    def describe(self) -> str:
        """E.g. ``3 VirtualService (networking.istio.io) objects in 2 namespaces``."""
        plural = "" if self.objects == 1 else "s"
        text = f"{self.objects} {self.kind} ({self.group}) object{plural}"
        if self.namespaces:
            text += f" in {self.namespaces} namespace{'' if self.namespaces == 1 else 's'}"
        return text


def _served_version(crd: KubeObject) -> str:
    """The version to list a CRD's objects at: its storage version, else the first served."""
    versions = [v for v in (crd.get("spec") or {}).get("versions") or [] if isinstance(v, dict)]
    stored = [v for v in versions if v.get("storage")] + [v for v in versions if v.get("served")]
    return str(stored[0].get("name", "")) if stored else ""


async def live_custom_resources(
    session: ClusterSession, crds: Sequence[ObjectRef], *, excluded: Iterable[ObjectRef] = ()
) -> list[CustomResourceCount]:
    """Per CRD of ``crds`` that exists, the custom resources of it in the whole cluster, less
    ``excluded`` (the release's own objects, deleted before its CRDs); kinds with none are left
    out."""
    skip = {identity(ref) for ref in excluded}

    async def count(ref: ObjectRef) -> CustomResourceCount | None:
        crd = await session.get_ref(ref)
        if crd is None:
            return None
        spec = crd.get("spec") or {}
        group, kind = str(spec.get("group", "")), str((spec.get("names") or {}).get("kind", ""))
        version = _served_version(crd)
        if not group or not kind or not version:
            return None
        items = await session.list(f"{group}/{version}", kind)
        theirs = [obj for obj in items if identity(ObjectRef.from_manifest(obj)) not in skip]
        if not theirs:
            return None
        namespaces = {str((obj.get("metadata") or {}).get("namespace") or "") for obj in theirs}
        namespaces.discard("")
        return CustomResourceCount(
            group=group, kind=kind, objects=len(theirs), namespaces=len(namespaces)
        )

    found = await asyncio.gather(*(count(ref) for ref in crds))
    return sorted((c for c in found if c is not None), key=lambda c: (-c.objects, c.group, c.kind))


def custom_resources_remain_detail(counts: Sequence[CustomResourceCount]) -> ErrorDetail:
    """The refusal to purge CRDs users' custom resources depend on (FAILED_PRECONDITION)."""
    shown = [count.describe() for count in counts[:_KINDS_SHOWN]]
    if len(counts) > _KINDS_SHOWN:
        shown.append(f"objects of {len(counts) - _KINDS_SHOWN} more kinds")
    total = sum(count.objects for count in counts)
    verb = "exists" if total == 1 else "exist"
    return ErrorDetail(
        code="FAILED_PRECONDITION",
        message=f"{', '.join(shown)} still {verb}; delete them or pass --param {PURGE_CRDS}=force",
        probable_cause="deleting a CustomResourceDefinition deletes every custom resource of it "
        "in the cluster, including ones users wrote",
        suggested_remediation=f"delete or move those objects first, or send parameters."
        f"{PURGE_CRDS}=force to delete them with the CRDs; nothing was deleted",
    )


def kept_crds_note(count: int, release: str) -> str:
    """What an uninstall that kept CRDs says about them, and how to remove them."""
    plural = "CustomResourceDefinition" if count == 1 else "CustomResourceDefinitions"
    return (
        f"kept {count} {plural} of release {release} (deleting them deletes every custom "
        f"resource of them); to remove them, delete again with --param {PURGE_CRDS}=true "
        "(refused while custom resources of them exist)"
    )


def release_crds(refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """The CustomResourceDefinitions among ``refs``."""
    return [ref for ref in refs if ref.kind == CRD_KIND]


async def refuse_over_custom_resources(
    session: ClusterSession, crds: Sequence[ObjectRef], release_objects: Sequence[ObjectRef]
) -> None:
    """FAILED_PRECONDITION while custom resources of ``crds`` exist beyond the release's
    (``release_objects``)."""
    counts = await live_custom_resources(session, crds, excluded=release_objects)
    if counts:
        raise ApplyError(custom_resources_remain_detail(counts))


async def kept_crds(session: ClusterSession, release: str, mesh: str) -> list[ObjectRef]:
    """CRDs an earlier uninstall of ``release`` kept: still labelled as its, for ``mesh``."""
    labelled_crds = await session.list(
        CRD_API_VERSION, CRD_KIND, None, f"{RELEASE_LABEL}={release}"
    )
    return [
        ObjectRef.from_manifest(crd)
        for crd in labelled_crds
        if owned_by(crd, mesh, release) and not (crd.get("metadata") or {}).get("deletionTimestamp")
    ]
