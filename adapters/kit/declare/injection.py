"""Namespace-level sidecar injection: the marker a mesh uses, the operation setting it, the check.

Meshes turn injection on for a namespace with a label (Istio: ``istio-injection=enabled``; Consul,
through its webhook's namespaceSelector) or an annotation (Linkerd: ``linkerd.io/inject:
enabled``). An `InjectionMarker` says which; the same marker drives the `inject-namespace`
operation (which owns only that field, so delete removes exactly it), the validate check, and
the declaration's `injection_label`/`injection_annotation` that GetMeshStatus reports.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.kit.declare.builders import namespace_annotations, namespace_labels
from adapters.kit.declare.checks import Check, CheckContext, Finding
from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.declare.operations import Category, OperationSpec, Ownership
from adapters.kit.declare.sources import ObjectsBuilder, ObjectsSource
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.records import Severity

__all__ = [
    "InjectionMarker",
    "MarkerField",
    "injected_namespaces_have_sidecars",
    "namespace_injection_operation",
]


class MarkerField(enum.Enum):
    """Which namespace metadata field carries the marker."""

    LABEL = "labels"
    ANNOTATION = "annotations"


@dataclass(frozen=True, kw_only=True)
class InjectionMarker:
    """The namespace label or annotation (key=value) that turns sidecar injection on."""

    field: MarkerField
    key: str
    value: str

    @property
    def text(self) -> str:
        """How findings name it, e.g. ``annotation linkerd.io/inject=enabled``."""
        return f"{self.field.name.lower()} {self.key}={self.value}"

    @property
    def as_label(self) -> tuple[str, str] | None:
        """(key, value) for `MeshDeclaration.injection_label`, None for an annotation."""
        return (self.key, self.value) if self.field is MarkerField.LABEL else None

    @property
    def as_annotation(self) -> tuple[str, str] | None:
        """(key, value) for `MeshDeclaration.injection_annotation`, None for a label."""
        return (self.key, self.value) if self.field is MarkerField.ANNOTATION else None

    def builder(self) -> ObjectsBuilder:
        """Objects builder setting the marker on the request's namespace."""
        entries = {self.key: self.value}
        if self.field is MarkerField.LABEL:
            return namespace_labels(entries)
        return namespace_annotations(entries)

    def marks(self, namespace: KubeObject) -> bool:
        """Whether ``namespace`` carries the marker."""
        entries = (namespace.get("metadata") or {}).get(self.field.value) or {}
        return str(entries.get(self.key, "")) == self.value

    async def namespaces(self, cluster: ClusterReader) -> list[str]:
        """Names of the namespaces carrying the marker, sorted."""
        selector = f"{self.key}={self.value}" if self.field is MarkerField.LABEL else ""
        found = await cluster.list("v1", "Namespace", label_selector=selector)
        return sorted(_name(n) for n in found if self.marks(n))


def namespace_injection_operation(
    marker: InjectionMarker,
    *,
    default_namespace: str,
    operation_id: str = "inject-namespace",
) -> OperationSpec:
    """The CONFIGURE operation setting ``marker`` on a namespace; delete removes only it."""
    return OperationSpec(
        id=operation_id,
        category=Category.CONFIGURE,
        description=f"Enable sidecar injection in the namespace ({marker.text})",
        default_namespace=default_namespace,
        sources=(ObjectsSource(build=marker.builder()),),
        ownership=Ownership.FIELDS,
    )


def _name(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _containers(pod: KubeObject) -> set[str]:
    spec = pod.get("spec") or {}
    return {
        str(c.get("name"))
        for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]
        if isinstance(c, dict)
    }


def _opted_out(pod: KubeObject, opt_out: tuple[str, str] | None) -> bool:
    if opt_out is None:
        return False
    metadata = pod.get("metadata") or {}
    key, value = opt_out
    return any(
        str((metadata.get(part) or {}).get(key, "")) == value for part in ("labels", "annotations")
    )


def injected_namespaces_have_sidecars(
    marker: InjectionMarker, *, container: str, opt_out: tuple[str, str] | None = None
) -> Check:
    """Lists the injected namespaces; pods there without ``container`` are a WARNING each.

    A pod without the sidecar was created before the marker (or the injector) was in place and runs
    outside the mesh until restarted. Pods that opted out with ``opt_out`` (label or annotation
    key, value) are skipped. No injected namespace at all is INFO: the mesh may be new.
    """

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        namespaces = await marker.namespaces(ctx.cluster)
        if not namespaces:
            return [
                Finding(
                    severity=Severity.INFO,
                    summary=f"no namespace is marked for injection ({marker.text})",
                    component="Namespace",
                    details="run inject-namespace on the namespaces whose pods should be meshed",
                )
            ]
        findings = [
            Finding(
                severity=Severity.INFO,
                summary=f"injection enabled in {len(namespaces)} namespaces: "
                + ", ".join(namespaces),
                component="Namespace",
            )
        ]
        for namespace in namespaces:
            pods = await ctx.cluster.list("v1", "Pod", namespace)
            bare = sorted(
                _name(p)
                for p in pods
                if container not in _containers(p) and not _opted_out(p, opt_out)
            )
            component = f"Namespace {namespace}"
            if bare:
                findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        summary=f"{len(bare)} pods in {namespace} run without the {container} "
                        "sidecar",
                        component=component,
                        details="restart their workloads (kubectl rollout restart) so the "
                        "injector adds it:\n" + "\n".join(bare),
                    )
                )
            else:
                findings.append(
                    Finding(
                        severity=Severity.INFO,
                        summary=f"all {len(pods)} pods in {namespace} have the {container} sidecar",
                        component=component,
                    )
                )
        return findings

    return run
