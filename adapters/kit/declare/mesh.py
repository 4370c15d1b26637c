"""What a mesh folder declares: `MeshDeclaration`, the table of its operations and its defaults.

A mesh adapter is a `MeshDeclaration`: a table of `OperationSpec`s, each naming its category,
parameters and the *sources* of the objects it applies (charts from the mesh's repository,
manifests from the sample/add-on location, or objects built from parameters). The kit turns a
spec plus a request into an `ApplyPlan` (plan), applies it (apply) and reports (run).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from adapters.kit.declare.operations import OperationSpec

__all__ = ["MeshDeclaration"]

_OPERATION_ID = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


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
