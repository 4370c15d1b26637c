"""What a mesh folder declares: its operations, their parameters, and what each one applies.

A mesh adapter is a `MeshDeclaration`: a table of `OperationSpec`s, each naming its category,
parameters and the *sources* of the objects it applies (charts from the mesh's repository,
manifests from the sample/add-on location, or objects built from parameters). The kit turns a
spec plus a request into an `ApplyPlan` (planning), applies it (applying) and reports (events).
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from adapters.kit.model.object_policy import ADOPT_EXISTING
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import CREATE_NAMESPACE, PURGE_CRDS, CrdRemoval

if TYPE_CHECKING:
    from adapters.kit.model.records import ErrorDetail, Severity

__all__ = [
    "CREATE_NAMESPACE",
    "PURGE_CRDS",
    "Category",
    "ChartSource",
    "CheckContext",
    "ClusterReader",
    "Finding",
    "ManifestSource",
    "MeshDeclaration",
    "ObjectsSource",
    "OperationSpec",
    "Ownership",
    "Parameter",
    "PlanContext",
    "Source",
]


class Category(enum.Enum):
    """Catalogue category (mirrors `meshplane.adapter.v1.OperationCategory`)."""

    INSTALL = "INSTALL"
    SAMPLE_APPLICATION = "SAMPLE_APPLICATION"
    CONFIGURE = "CONFIGURE"
    VALIDATE = "VALIDATE"
    CUSTOM = "CUSTOM"


class Ownership(enum.Enum):
    """What an operation owns, which decides what `delete` removes.

    OBJECTS: the operation created the objects; delete removes them (in reverse install order).
    FIELDS: the operation only set fields on objects others own (e.g. a namespace label); delete
    re-applies the same objects empty under the operation's field manager, so server-side apply
    removes exactly those fields and nothing else.
    """

    OBJECTS = "OBJECTS"
    FIELDS = "FIELDS"


ParameterCheck = Callable[[str], str | None]
"""Returns an error message (naming the fix) for a bad value, None when the value is fine."""


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One request parameter an operation accepts."""

    name: str
    description: str
    required: bool = False
    default: str = ""
    allowed: tuple[str, ...] = ()
    check: ParameterCheck | None = None


ADOPT_EXISTING_PARAMETER = Parameter(
    name=ADOPT_EXISTING,
    description="true lets the operation take over objects that exist but meshplane does not "
    "manage (they are then deleted with the release); cluster-scoped ones and protected "
    "namespaces still need the adapter operator's switches",
    allowed=("true", "false"),
)
"""The kit's parameter on every operation applying objects (`OperationSpec.request_parameters`)."""

CREATE_NAMESPACE_PARAMETER = Parameter(
    name=CREATE_NAMESPACE,
    description="true creates the namespaces the operation applies to when they do not exist "
    "(CLI: --create-namespace); without it a missing namespace fails the operation",
    allowed=("true", "false"),
)
"""The kit's parameter on every operation applying objects or fields."""

PURGE_CRDS_VALUES = tuple(
    choice.value for choice in (CrdRemoval.PURGE, CrdRemoval.KEEP, CrdRemoval.FORCE)
)
PURGE_CRDS_PARAMETER = Parameter(
    name=PURGE_CRDS,
    description="with delete: true also removes the release's CustomResourceDefinitions, refused "
    "while custom resources of them exist; force removes them anyway (CLI: --purge-crds); "
    "unset or false keeps them",
    allowed=PURGE_CRDS_VALUES,
)
"""The kit's parameter on every operation owning objects that can be deleted."""


class ClusterReader(Protocol):
    """Read access to one cluster, for plan builders and checks (implemented by the kit)."""

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """Return the object, or None when it (or its kind) does not exist."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        """List objects; an unknown kind gives an empty list."""
        ...

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. the mesh's CRDs are installed)."""
        ...


@dataclass(frozen=True, kw_only=True)
class PlanContext:
    """What a values builder or object builder may look at: the request and the cluster."""

    mesh: str
    operation: str
    namespace: str
    mesh_version: str
    parameters: Mapping[str, str]
    delete: bool
    cluster: ClusterReader
    custom_body: str = ""
    memo: dict[str, Any] = field(default_factory=dict)
    """Per-plan scratch space shared by the builders of one plan (e.g. generated certificates)."""


ValuesBuilder = Callable[[PlanContext], Awaitable[Mapping[str, Any]]]
ObjectsBuilder = Callable[[PlanContext], Awaitable[Sequence[KubeObject]]]
Condition = Callable[[PlanContext], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class ChartSource:
    """A chart from the mesh's chart repository, rendered at the requested mesh version."""

    chart: str
    release: str
    values: ValuesBuilder | None = None
    namespace: str | None = None
    """Namespace to render into; None means the request's namespace."""
    when: Condition | None = None
    """Rendered only when this returns True (e.g. a profile that has this component)."""
    purge_on_delete: bool = False
    """True: delete also removes objects the chart marks `helm.sh/resource-policy: keep` (Helm
    leaves them; e.g. `istioctl uninstall --purge` removes Istio's CRDs)."""


@dataclass(frozen=True, kw_only=True)
class ManifestSource:
    """A manifest file (sample app, add-on) fetched from the adapter's manifest location."""

    file: str
    """Path under a mirror laid out like the shared fixtures, e.g. ``apps/bookinfo.yaml``."""
    upstream: str = ""
    """Path under the upstream location (`MeshDeclaration.manifests_url` at the mesh version),
    e.g. ``samples/bookinfo/platform/kube/bookinfo.yaml``; empty means the same as ``file``."""
    when: Condition | None = None
    """Applied only when this returns True (e.g. the mesh's CRDs exist); None means always."""


@dataclass(frozen=True, kw_only=True)
class ObjectsSource:
    """Objects built from the request (policies, routes, labels)."""

    build: ObjectsBuilder
    when: Condition | None = None


Source = ChartSource | ManifestSource | ObjectsSource


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One result of a check: becomes an event with this severity."""

    severity: Severity
    summary: str
    component: str = ""
    details: str = ""
    error: ErrorDetail | None = None


@dataclass(frozen=True, kw_only=True)
class CheckContext:
    """What a validate check receives."""

    mesh: str
    namespace: str
    parameters: Mapping[str, str]
    cluster: ClusterReader


Check = Callable[[CheckContext], Awaitable[Sequence[Finding]]]
RequestCheck = Callable[[Mapping[str, str]], Sequence[tuple[str, str]]]
"""Cross-parameter validation: returns (field, message) pairs for each problem."""


@dataclass(frozen=True, kw_only=True)
class OperationSpec:
    """One catalogue entry and how the kit carries it out."""

    id: str
    category: Category
    description: str
    default_namespace: str
    parameters: tuple[Parameter, ...] = ()
    sources: tuple[Source, ...] = ()
    """What to apply, in order; charts and manifests are ordered by kind within the plan."""
    check: Check | None = None
    """For VALIDATE operations: the findings to report (nothing is applied)."""
    request_check: RequestCheck | None = None
    supports_delete: bool = True
    ownership: Ownership = Ownership.OBJECTS
    release: str = ""
    """Release name within the mesh; empty means the operation id. In the cluster it is prefixed
    with the mesh (`MeshDeclaration.release_of`)."""
    uses_mesh_version: bool = False
    """True when mesh_version selects what is applied (install); validated against the index."""
    mesh_versions: tuple[str, ...] = ()
    """Versions the operation applies to; empty means all installable versions."""
    custom: bool = False
    """True for the `custom` operation: objects come from the request's YAML body."""

    @property
    def release_name(self) -> str:
        """The operation's release within its mesh (what `status_release` names)."""
        return self.release or self.id

    @property
    def request_parameters(self) -> tuple[Parameter, ...]:
        """Every parameter a request may send: the declared ones, plus the kit's
        ``create-namespace`` for operations that apply anything, and ``adopt-existing`` and
        ``purge-crds`` (with delete) for those that apply objects of their own."""
        if self.check is not None:
            return self.parameters
        kit = [CREATE_NAMESPACE_PARAMETER]
        if self.ownership is Ownership.OBJECTS:
            kit.append(ADOPT_EXISTING_PARAMETER)
            if self.supports_delete:
                kit.append(PURGE_CRDS_PARAMETER)
        declared = {p.name for p in self.parameters}
        return (*self.parameters, *(p for p in kit if p.name not in declared))


@dataclass(frozen=True, kw_only=True)
class MeshDeclaration:
    """Everything an adapter folder declares about its mesh."""

    mesh: str
    default_port: int
    chart_repository: str
    """Official chart repository URL (overridable with --chart-repo)."""
    manifests_url: str
    """Where sample apps and add-ons come from by default; may contain `{version}`."""
    default_namespace: str
    operations: tuple[OperationSpec, ...]
    status_release: str = "install"
    """Release whose inventory GetMeshStatus reports."""
    injection_label: tuple[str, str] | None = None
    """Namespace label (key, value) that enables sidecar injection, if the mesh uses a label."""
    injection_annotation: tuple[str, str] | None = None
    """Namespace annotation (key, value) that enables injection, if the mesh uses one."""
    capabilities: tuple[str, ...] = ()

    def release_of(self, spec: OperationSpec, custom_body: str = "") -> str:
        """The release's name in the cluster (inventory Secret, release label).

        Prefixed with the mesh, because two meshes share operation ids (`install`, `httpbin`):
        without it one mesh's delete or prune would act on another mesh's objects. A custom body
        is its own release, so the same YAML deletes what it applied.
        """
        if spec.custom:
            digest = hashlib.sha256(custom_body.encode("utf-8")).hexdigest()[:12]
            return f"{self.mesh}-{spec.release_name}-{digest}"
        return f"{self.mesh}-{spec.release_name}"

    @property
    def status_release_name(self) -> str:
        """The cluster name of the release GetMeshStatus reports (`status_release`)."""
        return f"{self.mesh}-{self.status_release}"

    def operation(self, operation_id: str) -> OperationSpec | None:
        """Look up a catalogue entry by id."""
        for spec in self.operations:
            if spec.id == operation_id:
                return spec
        return None

    def __post_init__(self) -> None:
        ids = [spec.id for spec in self.operations]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.mesh}: duplicate operation ids in {ids}")
        for spec in self.operations:
            if not _OPERATION_ID.fullmatch(spec.id):
                raise ValueError(f"{self.mesh}: operation id {spec.id!r} is not a lower-case slug")


_OPERATION_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
