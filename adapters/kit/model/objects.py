"""Shared vocabulary for Kubernetes objects between rendering and the apply engine.

Objects stay plain JSON-shaped dicts (what YAML, Helm and the API server all speak); `ObjectRef`
names one object, and the scope table says which kinds carry no namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = [
    "CLUSTER_SCOPED_KINDS",
    "KubeObject",
    "ObjectRef",
    "crd_scopes",
    "is_cluster_scoped",
    "with_default_namespace",
]

KubeObject: TypeAlias = dict[str, Any]

# Built-in kinds served without a namespace (kubectl api-resources --namespaced=false).
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "ClusterRoleList",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PodSecurityPolicy",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "SelfSubjectAccessReview",
        "SelfSubjectReview",
        "SelfSubjectRulesReview",
        "StorageClass",
        "StorageVersionMigration",
        "SubjectAccessReview",
        "TokenReview",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
        "VolumeAttributesClass",
    }
)


@dataclass(frozen=True, kw_only=True)
class ObjectRef:
    """The identity of one object: what server-side apply and deletion address."""

    api_version: str
    kind: str
    namespace: str | None
    name: str

    @classmethod
    def from_manifest(cls, manifest: KubeObject) -> ObjectRef:
        """Read the reference out of a manifest; a missing name or kind is a ValueError."""
        metadata = manifest.get("metadata") or {}
        api_version = manifest.get("apiVersion")
        kind = manifest.get("kind")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise ValueError("manifest has no apiVersion/kind")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{kind} manifest has no metadata.name")
        namespace = metadata.get("namespace")
        return cls(
            api_version=api_version,
            kind=kind,
            namespace=namespace if isinstance(namespace, str) and namespace else None,
            name=name,
        )

    @property
    def group(self) -> str:
        """The API group ("" for the core group)."""
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> str:
        """A stable string key, e.g. ``apps/v1/Deployment/istio-system/istiod``.

        The group rather than the version would be the true identity, but objects rendered
        together share a version, and keeping it makes keys readable in events.
        """
        return f"{self.api_version}/{self.kind}/{self.namespace or ''}/{self.name}"

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


def crd_scopes(objects: Iterable[KubeObject]) -> dict[tuple[str, str], bool]:
    """Map (group, kind) → cluster-scoped for every CustomResourceDefinition in ``objects``."""
    scopes: dict[tuple[str, str], bool] = {}
    for obj in objects:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        group, kind = spec.get("group"), names.get("kind")
        if isinstance(group, str) and isinstance(kind, str):
            scopes[(group, kind)] = spec.get("scope") == "Cluster"
    return scopes


def is_cluster_scoped(obj: KubeObject, crds: dict[tuple[str, str], bool] | None = None) -> bool:
    """Whether ``obj`` has no namespace: built-in table first, then known CRDs.

    Unknown kinds are taken as namespaced, which is what nearly all custom resources are.
    """
    kind = str(obj.get("kind", ""))
    api_version = str(obj.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    if crds and (group, kind) in crds:
        return crds[(group, kind)]
    built_in_group = "." not in group or group.endswith(".k8s.io")
    return built_in_group and kind in CLUSTER_SCOPED_KINDS


def with_default_namespace(
    objects: Iterable[KubeObject],
    namespace: str,
    *,
    extra_crds: dict[tuple[str, str], bool] | None = None,
) -> list[KubeObject]:
    """Give every namespaced object without a namespace the default one (as helm/kubectl do).

    Cluster-scoped objects lose any namespace a template gave them (the API server ignores
    it; dropping it keeps `ObjectRef` keys equal to what the server reports). Changed objects
    are copied at the top two levels; the input is not modified.
    """
    items = list(objects)
    crds = {**(extra_crds or {}), **crd_scopes(items)}
    result: list[KubeObject] = []
    for obj in items:
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            result.append(obj)
        elif is_cluster_scoped(obj, crds):
            if "namespace" in metadata:
                stripped = {k: v for k, v in metadata.items() if k != "namespace"}
                result.append({**obj, "metadata": stripped})
            else:
                result.append(obj)
        elif metadata.get("namespace"):
            result.append(obj)
        else:
            result.append({**obj, "metadata": {**metadata, "namespace": namespace}})
    return result
