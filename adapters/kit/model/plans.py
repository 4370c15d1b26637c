"""Plans: the ordered objects one operation applies to one cluster, and how progress is reported.

Planning produces an `ApplyPlan`; applying consumes it and reports `Progress` through a sink.
Neither imports the other: this module is their shared language.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from adapters.kit.model.objects import KubeObject, ObjectRef

__all__ = [
    "CREATE_NAMESPACE",
    "FIELD_MANAGER",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "MESH_LABEL",
    "NO_ADOPTION",
    "PURGE_CRDS",
    "RELEASE_LABEL",
    "Adoption",
    "ApplyOutcome",
    "ApplyPlan",
    "ApplyPolicy",
    "CrdRemoval",
    "Hook",
    "HookPhase",
    "Progress",
    "ProgressKind",
    "ProgressSink",
    "WaitPolicy",
    "fields_manager",
]

FIELD_MANAGER = "meshplane"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "meshplane"
RELEASE_LABEL = "meshplane.io/release"
MESH_LABEL = "meshplane.io/mesh"
"""Which mesh's adapter owns the object: managed-by alone is shared by every mesh."""

CREATE_NAMESPACE = "create-namespace"
"""The request parameter that lets an operation create the namespaces it writes into when they
do not exist (`ApplyPlan.create_namespaces`; an install always creates its own)."""
PURGE_CRDS = "purge-crds"
"""The request parameter deciding whether an uninstall removes the release's CRDs
(`CrdRemoval`)."""


class CrdRemoval(enum.Enum):
    """What an uninstall does with the release's CustomResourceDefinitions.

    Deleting a CRD deletes every custom resource of it in the cluster, users' included (an
    uninstall taking Istio's CRDs takes every VirtualService with them), so they stay unless
    asked for.
    """

    KEEP = "false"
    """Left in place (labelled as the release's, so a later purge or install finds them)."""
    PURGE = "true"
    """Deleted, but refused while custom resources of them exist beyond the release's own."""
    FORCE = "force"
    """Deleted whatever custom resources of them exist."""

    @classmethod
    def of(cls, parameters: Mapping[str, str]) -> CrdRemoval:
        """The request's choice (``purge-crds``; unset is KEEP). Values are checked at
        admission, so an unknown one here is KEEP, the safe side."""
        value = parameters.get(PURGE_CRDS, "").strip().lower()
        return next((choice for choice in cls if choice.value == value), cls.KEEP)


def fields_manager(release: str) -> str:
    """The field manager of a release that owns fields, not objects (`ownership_fields_only`).

    Its own, not meshplane's shared one: server-side apply gives a manager exactly the fields of
    its last apply, so under the shared manager setting a namespace's label would drop the labels
    another release put on the same Namespace, and releasing the label would drop them all.
    """
    return f"{FIELD_MANAGER}-{release}"[:128]


class HookPhase(enum.Enum):
    """When a Helm hook runs relative to the main objects."""

    PRE_INSTALL = "pre-install"
    POST_INSTALL = "post-install"
    PRE_UPGRADE = "pre-upgrade"
    POST_UPGRADE = "post-upgrade"
    PRE_DELETE = "pre-delete"
    POST_DELETE = "post-delete"


@dataclass(frozen=True, kw_only=True)
class Hook:
    """A Helm hook object: applied in its phase, waited on, then deleted per its policy."""

    manifest: KubeObject
    phases: tuple[HookPhase, ...]
    weight: int = 0
    delete_policies: tuple[str, ...] = ("before-hook-creation",)


@dataclass(frozen=True, kw_only=True)
class WaitPolicy:
    """How long and for what to wait after applying."""

    timeout_seconds: float = 300.0
    wait_for_ready: bool = True
    poll_interval_seconds: float = 0.5
    stuck_seconds: float = 20.0
    """How long a workload may keep failing to create its Pods (ReplicaFailure, e.g. an
    admission webhook refusing or unreachable) before the wait fails with that cause."""


@dataclass(frozen=True, kw_only=True)
class ApplyPolicy:
    """How objects are written."""

    field_manager: str = FIELD_MANAGER
    force_conflicts: bool = True
    prune: bool = True
    """On upgrade, delete inventory objects the new plan no longer contains."""


@dataclass(frozen=True, kw_only=True)
class Adoption:
    """Which existing objects meshplane does not own a plan may take over (`object_policy`).

    An object exists unowned when it lacks meshplane's managed-by label and a release label of
    the plan's mesh. The apply engine refuses to touch such an object unless its key is here.
    """

    keys: frozenset[str] = frozenset()
    requested: bool = False
    """The request asked to adopt (``adopt-existing=true``), whether or not every object may be."""


NO_ADOPTION = Adoption()


@dataclass(frozen=True, kw_only=True)
class ApplyPlan:
    """Everything to apply (or remove) for one release in one cluster.

    `objects` are already defaulted (namespaces filled in) and sorted in install order; CRDs come
    first so the applier can wait for them to be Established before custom resources.
    """

    release: str
    """Inventory name, mesh-scoped (`MeshDeclaration.release_of`): unique per namespace."""
    namespace: str
    """Namespace holding the release inventory."""
    mesh: str
    objects: tuple[KubeObject, ...]
    hooks: tuple[Hook, ...] = ()
    keep: frozenset[str] = frozenset()
    """Keys (`ObjectRef.key`) of objects with `helm.sh/resource-policy: keep`: never deleted."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Recorded in the inventory: chart versions, mesh version, values digest."""
    ownership_fields_only: bool = False
    """True: the release owns fields, not objects (see `declare.operations.Ownership.FIELDS`)."""
    requested: frozenset[str] = frozenset()
    """Keys of objects the request supplied (custom YAML): `object_policy` holds them to every
    rule; the others come from the mesh's declaration."""
    adoption: Adoption = NO_ADOPTION
    apply_policy: ApplyPolicy = ApplyPolicy()
    wait_policy: WaitPolicy = WaitPolicy()
    create_namespaces: bool = False
    """True: the release namespace and the namespaces of the objects are created when missing
    (an install, or a request with ``create-namespace=true``); False: a missing one fails the
    apply (FAILED_PRECONDITION) before anything is written."""

    @property
    def refs(self) -> tuple[ObjectRef, ...]:
        """References of every object, in install order."""
        return tuple(ObjectRef.from_manifest(obj) for obj in self.objects)


class ProgressKind(enum.Enum):
    """What happened to one object."""

    APPLIED = "applied"
    UNCHANGED = "unchanged"
    DELETED = "deleted"
    PRUNED = "pruned"
    KEPT = "kept"
    WAITING = "waiting"
    READY = "ready"
    FAILED = "failed"
    HOOK_COMPLETED = "hook-completed"


@dataclass(frozen=True, kw_only=True)
class Progress:
    """One step of applying a plan, reported as it happens (becomes an event)."""

    kind: ProgressKind
    ref: ObjectRef
    message: str = ""
    reason: str = ""
    """Machine-readable reason from the cluster for FAILED/WAITING (e.g. `ImagePullBackOff`)."""


ProgressSink = Callable[[Progress], None]


@dataclass(frozen=True, kw_only=True)
class ApplyOutcome:
    """Counts of what applying (or deleting) a plan did."""

    applied: int = 0
    unchanged: int = 0
    deleted: int = 0
    ready: int = 0
    noop: bool = False
    """True when the inventory showed the same plan already applied and every object present."""
    crds_kept: int = 0
    """Uninstall: the release's CustomResourceDefinitions left in place (`CrdRemoval.KEEP`)."""
