"""Install and uninstall order of Kubernetes objects, as data (the facts of Helm's kind sorter).

Things others depend on go first: namespaces before what lives in them, CRDs before their custom
resources, RBAC and config before the workloads that use them, webhooks last so they do not
intercept the very objects that make up their own backend. Uninstall runs the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.kit.model.objects import KubeObject

__all__ = [
    "INSTALL_ORDER",
    "UNINSTALL_ORDER",
    "InstallPhase",
    "phases_for_install",
    "sort_for_install",
    "sort_for_uninstall",
]

INSTALL_ORDER: tuple[str, ...] = (
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)

# Helm's UninstallOrder: the reverse, except Services go before the workloads behind them
# (so traffic stops first).
UNINSTALL_ORDER: tuple[str, ...] = (
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "Ingress",
    "IngressClass",
    "Service",
    "CronJob",
    "Job",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Deployment",
    "ReplicaSet",
    "ReplicationController",
    "Pod",
    "DaemonSet",
    "RoleBindingList",
    "RoleBinding",
    "RoleList",
    "Role",
    "ClusterRoleBindingList",
    "ClusterRoleBinding",
    "ClusterRoleList",
    "ClusterRole",
    "CustomResourceDefinition",
    "PersistentVolumeClaim",
    "PersistentVolume",
    "StorageClass",
    "ConfigMap",
    "SecretList",
    "Secret",
    "ServiceAccount",
    "PodDisruptionBudget",
    "PodSecurityPolicy",
    "LimitRange",
    "ResourceQuota",
    "NetworkPolicy",
    "Namespace",
    "PriorityClass",
)

_INSTALL_RANK = {kind: rank for rank, kind in enumerate(INSTALL_ORDER)}
_UNINSTALL_RANK = {kind: rank for rank, kind in enumerate(UNINSTALL_ORDER)}


def _kind(obj: KubeObject) -> str:
    return str(obj.get("kind", ""))


def sort_for_install(objects: Iterable[KubeObject]) -> list[KubeObject]:
    """Order for applying; stable within a kind.

    Kinds outside the table (custom resources) come after every known kind, grouped by kind
    name, because their CRDs and the controllers/webhooks that serve them must exist first.
    """
    known = len(INSTALL_ORDER)
    return sorted(
        objects,
        key=lambda o: (
            _INSTALL_RANK.get(_kind(o), known),
            "" if _kind(o) in _INSTALL_RANK else _kind(o),
        ),
    )


def sort_for_uninstall(objects: Iterable[KubeObject]) -> list[KubeObject]:
    """Order for deleting; stable within a kind.

    Custom resources go first, before the webhooks, controllers and CRDs that serve them: a
    deleted CRD takes its resources with it, and a finalizer on a resource whose controller is
    already gone would never be cleared. (Helm puts unknown kinds last here; it never deletes
    CRDs, we may.)
    """
    return sorted(
        objects,
        key=lambda o: (
            _UNINSTALL_RANK.get(_kind(o), -1),
            "" if _kind(o) in _UNINSTALL_RANK else _kind(o),
        ),
    )


@dataclass(frozen=True, kw_only=True)
class InstallPhase:
    """A group of objects the applier applies together before waiting and moving on.

    ``name`` is one of ``namespaces``, ``crds`` (wait for Established), ``resources`` (built-in
    kinds in install order) and ``custom-resources`` (kinds served by CRDs).
    """

    name: str
    objects: tuple[KubeObject, ...]


_NAMESPACE_RANK = _INSTALL_RANK["Namespace"]


def phases_for_install(objects: Sequence[KubeObject]) -> list[InstallPhase]:
    """Split objects into install phases, each sorted; empty phases are left out."""
    groups: dict[str, list[KubeObject]] = {
        "namespaces": [],
        "crds": [],
        "resources": [],
        "custom-resources": [],
    }
    for obj in sort_for_install(objects):
        rank = _INSTALL_RANK.get(_kind(obj))
        if rank is None:
            groups["custom-resources"].append(obj)
        elif rank <= _NAMESPACE_RANK:
            groups["namespaces"].append(obj)
        elif _kind(obj) == "CustomResourceDefinition":
            groups["crds"].append(obj)
        else:
            groups["resources"].append(obj)
    return [
        InstallPhase(name=name, objects=tuple(members))
        for name, members in groups.items()
        if members
    ]
