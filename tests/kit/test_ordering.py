"""Install/uninstall order: dependencies first on install, the reverse on uninstall."""

from __future__ import annotations

import random

from adapters.kit.model.objects import KubeObject
from adapters.kit.model.ordering import (
    INSTALL_ORDER,
    UNINSTALL_ORDER,
    phases_for_install,
    sort_for_install,
    sort_for_uninstall,
)


def obj(kind: str, name: str = "x", api_version: str = "v1") -> KubeObject:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}


MIXED = [
    obj("ValidatingWebhookConfiguration", api_version="admissionregistration.k8s.io/v1"),
    obj("VirtualService", api_version="networking.istio.io/v1"),
    obj("Deployment", "web", "apps/v1"),
    obj("Service", "web"),
    obj("MutatingWebhookConfiguration", api_version="admissionregistration.k8s.io/v1"),
    obj("ConfigMap", "settings"),
    obj("ClusterRoleBinding", api_version="rbac.authorization.k8s.io/v1"),
    obj("ServiceAccount", "web"),
    obj("CustomResourceDefinition", "vs", "apiextensions.k8s.io/v1"),
    obj("ClusterRole", api_version="rbac.authorization.k8s.io/v1"),
    obj("Gateway", api_version="networking.istio.io/v1"),
    obj("Namespace", "demo"),
    obj("Secret", "token"),
]


def kinds(objects: list[KubeObject]) -> list[str]:
    return [str(o["kind"]) for o in objects]


def test_install_order_puts_dependencies_first() -> None:
    ordered = kinds(sort_for_install(MIXED))
    assert ordered == [
        "Namespace",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "Service",
        "Deployment",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "Gateway",
        "VirtualService",
    ]


def test_uninstall_is_the_reverse_with_custom_resources_first() -> None:
    ordered = kinds(sort_for_uninstall(MIXED))
    assert ordered[:2] == ["Gateway", "VirtualService"]
    assert ordered[2:4] == ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"]
    position = {kind: i for i, kind in enumerate(ordered)}
    assert position["Service"] < position["Deployment"]  # stop traffic before its backends
    assert position["Deployment"] < position["ClusterRoleBinding"] < position["ClusterRole"]
    assert position["ClusterRole"] < position["CustomResourceDefinition"]
    assert position["CustomResourceDefinition"] < position["ConfigMap"] < position["Secret"]
    assert ordered[-1] == "Namespace"


def test_tables_hold_the_same_kinds() -> None:
    assert sorted(INSTALL_ORDER) == sorted(UNINSTALL_ORDER)
    assert len(set(INSTALL_ORDER)) == len(INSTALL_ORDER)
    # Apart from Services moving ahead of workloads, uninstall is install reversed.
    reversed_install = [k for k in reversed(INSTALL_ORDER) if k != "Service"]
    assert [k for k in UNINSTALL_ORDER if k != "Service"] == reversed_install


def test_sorting_is_stable_within_a_kind() -> None:
    deployments = [obj("Deployment", f"d{i}", "apps/v1") for i in range(5)]
    shuffled = [*deployments, obj("Namespace"), obj("Role")]
    random.Random(7).shuffle(shuffled)
    names = [o["metadata"]["name"] for o in sort_for_install(shuffled) if o["kind"] == "Deployment"]
    assert names == [o["metadata"]["name"] for o in shuffled if o["kind"] == "Deployment"]
    names = [
        o["metadata"]["name"] for o in sort_for_uninstall(shuffled) if o["kind"] == "Deployment"
    ]
    assert names == [o["metadata"]["name"] for o in shuffled if o["kind"] == "Deployment"]


def test_phases_separate_namespaces_crds_resources_and_custom_resources() -> None:
    phases = phases_for_install(MIXED)
    assert [p.name for p in phases] == ["namespaces", "crds", "resources", "custom-resources"]
    assert kinds(list(phases[0].objects)) == ["Namespace"]
    assert kinds(list(phases[1].objects)) == ["CustomResourceDefinition"]
    assert kinds(list(phases[3].objects)) == ["Gateway", "VirtualService"]
    flattened = [o for p in phases for o in p.objects]
    assert len(flattened) == len(MIXED)
    assert kinds(list(phases[2].objects))[-1] == "ValidatingWebhookConfiguration"


def test_phases_leave_out_empty_groups() -> None:
    phases = phases_for_install([obj("Deployment", api_version="apps/v1"), obj("Service")])
    assert [p.name for p in phases] == ["resources"]
    assert kinds(list(phases[0].objects)) == ["Service", "Deployment"]
    assert phases_for_install([]) == []
