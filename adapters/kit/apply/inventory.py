"""The release inventory: what a release put in the cluster, kept in the cluster itself.

One Secret per release (`meshplane-release-<release>`, type `meshplane.io/release.v1`) in the
release's namespace records the owning mesh (release names are mesh-scoped, and a record of
another mesh is never adopted), the objects in install order, the chart/mesh metadata, a digest of
the plan and a status. Like Helm's release records it is written *pending* before anything else
is touched and *deployed* once the release is ready, so an adapter that restarts mid-way reads
what it was doing from the cluster rather than from memory it lost.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.readiness import READINESS_RULES, readiness_of
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import (
    FIELD_MANAGER,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    MESH_LABEL,
    ApplyPlan,
)
from adapters.kit.model.records import ErrorDetail

__all__ = [
    "INVENTORY_LABEL",
    "INVENTORY_TYPE",
    "ComponentState",
    "ReleaseRecord",
    "ReleaseState",
    "ReleaseStatus",
    "canonical_json",
    "delete_inventory",
    "inventory_name",
    "plan_digest",
    "read_inventory",
    "release_status",
    "write_inventory",
]

INVENTORY_TYPE = "meshplane.io/release.v1"
INVENTORY_LABEL = "meshplane.io/inventory-of"
"""Label naming the release an inventory Secret describes (not the release label: the Secret is
the record of the release, not one of its objects)."""
_DATA_KEY = "release"
_SCHEMA = 1


class ReleaseState(enum.Enum):
    """Where a release is in its lifecycle (Helm's names for the same states)."""

    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    DEPLOYED = "deployed"
    PENDING_DELETE = "pending-delete"

    @property
    def pending(self) -> bool:
        """True while an operation on the release has not finished."""
        return self is not ReleaseState.DEPLOYED


@dataclass(frozen=True, kw_only=True)
class ReleaseRecord:
    """Everything the inventory Secret holds about one release."""

    release: str
    namespace: str
    mesh: str
    status: ReleaseState
    revision: int
    objects: tuple[ObjectRef, ...]
    """Objects of the release in install order (during an upgrade: of the new plan)."""
    previous_objects: tuple[ObjectRef, ...] = ()
    """During a pending upgrade: objects of the last deployed revision, so a resumed upgrade still
    knows what to prune."""
    hook_objects: tuple[ObjectRef, ...] = ()
    """Hook objects left in the cluster by their delete policy: removed on uninstall."""
    keep: frozenset[str] = frozenset()
    metadata: Mapping[str, str] = field(default_factory=dict)
    plan_digest: str = ""
    ownership_fields_only: bool = False
    created: str = ""
    updated: str = ""

    def to_json(self) -> dict[str, Any]:
        """The stored form (stable keys; refs as small dicts)."""
        return {
            "schema": _SCHEMA,
            "release": self.release,
            "namespace": self.namespace,
            "mesh": self.mesh,
            "status": self.status.value,
            "revision": self.revision,
            "objects": [_ref_json(ref) for ref in self.objects],
            "previousObjects": [_ref_json(ref) for ref in self.previous_objects],
            "hookObjects": [_ref_json(ref) for ref in self.hook_objects],
            "keep": sorted(self.keep),
            "metadata": dict(self.metadata),
            "planDigest": self.plan_digest,
            "ownershipFieldsOnly": self.ownership_fields_only,
            "created": self.created,
            "updated": self.updated,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReleaseRecord:
        """Parse the stored form; a malformed record is a ValueError."""
        try:
            return cls(
                release=str(data["release"]),
                namespace=str(data["namespace"]),
                mesh=str(data.get("mesh", "")),
                status=ReleaseState(data["status"]),
                revision=int(data.get("revision", 1)),
                objects=tuple(_ref_from(item) for item in data.get("objects") or []),
                previous_objects=tuple(
                    _ref_from(item) for item in data.get("previousObjects") or []
                ),
                hook_objects=tuple(_ref_from(item) for item in data.get("hookObjects") or []),
                keep=frozenset(str(key) for key in data.get("keep") or []),
                metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
                plan_digest=str(data.get("planDigest", "")),
                ownership_fields_only=bool(data.get("ownershipFieldsOnly", False)),
                created=str(data.get("created", "")),
                updated=str(data.get("updated", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed release record: {exc}") from exc

    @property
    def deployed_before(self) -> bool:
        """Whether a revision was deployed: the next apply is an upgrade (its hooks too)."""
        return (
            self.status in (ReleaseState.DEPLOYED, ReleaseState.PENDING_UPGRADE)
            or self.revision > 1
        )

    @property
    def objects_in_cluster(self) -> tuple[ObjectRef, ...]:
        """Objects that may be in the cluster from earlier runs: the previous revision's and
        this one's (an interrupted upgrade may have left both)."""
        merged = {ref.key: ref for ref in (*self.previous_objects, *self.objects)}
        return tuple(merged.values())

    def with_status(self, status: ReleaseState) -> ReleaseRecord:
        """The same record in another state, stamped now."""
        return replace(self, status=status, updated=now_text())


def _ref_json(ref: ObjectRef) -> dict[str, str]:
    item = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        item["namespace"] = ref.namespace
    return item


def _ref_from(item: Mapping[str, Any]) -> ObjectRef:
    namespace = item.get("namespace")
    return ObjectRef(
        api_version=str(item["apiVersion"]),
        kind=str(item["kind"]),
        namespace=str(namespace) if namespace else None,
        name=str(item["name"]),
    )


def now_text() -> str:
    """A UTC RFC 3339 timestamp, as Kubernetes writes them."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def inventory_name(release: str) -> str:
    """Name of the Secret holding a release's inventory."""
    return f"meshplane-release-{release}"


def _inventory_ref(namespace: str, release: str) -> ObjectRef:
    return ObjectRef(
        api_version="v1", kind="Secret", namespace=namespace, name=inventory_name(release)
    )


def canonical_json(obj: Any) -> bytes:
    """``obj`` as UTF-8 JSON with sorted keys and no spaces: equal objects, equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plan_digest(plan: ApplyPlan, bodies: Sequence[bytes] | None = None) -> str:
    """sha256 over the canonical JSON of what the plan would write (objects, hooks, flags).

    ``bodies`` are the plan's objects already in `canonical_json` form, exactly as they are
    sent (the apply engine encodes each object once, for the digest and for the request);
    without them the plan's objects are encoded here.
    """
    digest = hashlib.sha256()
    encoded = bodies if bodies is not None else [canonical_json(obj) for obj in plan.objects]
    for body in encoded:
        digest.update(len(body).to_bytes(8, "big"))
        digest.update(body)
    rest = {
        "hooks": [
            {
                "manifest": hook.manifest,
                "phases": [phase.value for phase in hook.phases],
                "weight": hook.weight,
                "deletePolicies": list(hook.delete_policies),
            }
            for hook in plan.hooks
        ],
        "keep": sorted(plan.keep),
        "ownershipFieldsOnly": plan.ownership_fields_only,
    }
    digest.update(canonical_json(rest))
    return "sha256:" + digest.hexdigest()


async def read_inventory(
    session: ClusterSession, namespace: str, release: str, *, mesh: str
) -> ReleaseRecord | None:
    """``mesh``'s record of the release, or None when the release is not installed.

    A record another mesh wrote is refused (RELEASE_OWNED_BY_OTHER_MESH), never adopted:
    upgrading, pruning or deleting from it would act on that mesh's objects.
    """
    secret = await session.get_ref(_inventory_ref(namespace, release))
    if secret is None:
        return None
    encoded = (secret.get("data") or {}).get(_DATA_KEY)
    try:
        if not isinstance(encoded, str):
            raise ValueError(f"no {_DATA_KEY!r} key")
        record = ReleaseRecord.from_json(json.loads(base64.b64decode(encoded)))
    except ValueError as exc:
        raise ApplyError(
            ErrorDetail(
                code="INVENTORY_CORRUPT",
                message=f"the release inventory {namespace}/{inventory_name(release)} cannot be "
                f"read: {exc}",
                probable_cause="the Secret was edited by hand or written by an incompatible "
                "meshplane version",
                suggested_remediation="restore the Secret, or delete it and re-install the release",
            )
        ) from exc
    if record.mesh != mesh:
        raise ApplyError(
            ErrorDetail(
                code="RELEASE_OWNED_BY_OTHER_MESH",
                message=f"the release inventory {namespace}/{inventory_name(release)} belongs to "
                f"mesh {record.mesh or '(none recorded)'!r}, not {mesh!r}",
                probable_cause="another mesh's adapter (or an older meshplane) recorded a release "
                "under this name in this namespace",
                suggested_remediation=f"leave it to the {record.mesh or 'owning'} adapter; if that "
                f"release is gone, delete Secret {namespace}/{inventory_name(release)} by hand",
            )
        )
    return record


async def write_inventory(session: ClusterSession, record: ReleaseRecord) -> None:
    """Store the record (server-side apply of the Secret)."""
    payload = json.dumps(record.to_json(), sort_keys=True, separators=(",", ":"))
    secret: KubeObject = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": INVENTORY_TYPE,
        "metadata": {
            "name": inventory_name(record.release),
            "namespace": record.namespace,
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                INVENTORY_LABEL: record.release,
                MESH_LABEL: record.mesh,
                "meshplane.io/release-status": record.status.value,
            },
        },
        "data": {_DATA_KEY: base64.b64encode(payload.encode("utf-8")).decode("ascii")},
    }
    # Whether the Secret changed does not matter: skip reading it first.
    await session.apply(secret, field_manager=FIELD_MANAGER, force=True, previous_version=None)


async def delete_inventory(session: ClusterSession, namespace: str, release: str) -> bool:
    """Remove the record; False when there was none."""
    return await session.delete(_inventory_ref(namespace, release))


@dataclass(frozen=True, kw_only=True)
class ComponentState:
    """Readiness of one workload of a release (a GetMeshStatus component)."""

    ref: ObjectRef
    ready: bool
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class ReleaseStatus:
    """What GetMeshStatus reports for one release."""

    record: ReleaseRecord
    components: tuple[ComponentState, ...]

    @property
    def installed(self) -> bool:
        """A release counts as installed once it has been deployed at least once."""
        return self.record.status is ReleaseState.DEPLOYED or self.record.revision > 1

    @property
    def version(self) -> str:
        """The mesh version recorded at install (metadata `mesh_version`)."""
        return self.record.metadata.get("mesh_version", "")


_COMPONENT_KINDS = frozenset(READINESS_RULES) - {"CustomResourceDefinition", "Job", "Service"}


async def release_status(
    session: ClusterSession, namespace: str, release: str, *, mesh: str
) -> ReleaseStatus | None:
    """The release's record and the readiness of its workloads; None when ``mesh`` has not
    installed it (another mesh's record under the same name is not this mesh's status)."""
    try:
        record = await read_inventory(session, namespace, release, mesh=mesh)
    except ApplyError as exc:
        if exc.detail.code != "RELEASE_OWNED_BY_OTHER_MESH":
            raise
        return None
    if record is None:
        return None
    refs = [ref for ref in record.objects if ref.kind in _COMPONENT_KINDS]
    found = await asyncio.gather(*(session.get_ref(ref) for ref in refs))
    components: list[ComponentState] = []
    for ref, obj in zip(refs, found, strict=True):
        if obj is None:
            components.append(ComponentState(ref=ref, ready=False, message="missing"))
            continue
        state = readiness_of(obj)
        message = "ready" if state.ready else f"{state.reason}: {state.message}".strip(": ")
        components.append(ComponentState(ref=ref, ready=state.ready, message=message))
    return ReleaseStatus(record=record, components=tuple(components))
