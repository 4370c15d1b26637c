"""Object references and namespace defaulting shared by rendering and the apply engine."""

from __future__ import annotations

import pytest

from adapters.kit.model.objects import (
    KubeObject,
    ObjectRef,
    crd_scopes,
    is_cluster_scoped,
    with_default_namespace,
)


def crd(group: str, kind: str, scope: str) -> KubeObject:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{kind.lower()}s.{group}"},
        "spec": {"group": group, "scope": scope, "names": {"kind": kind}},
    }


def test_object_ref_from_manifest_and_key() -> None:
    ref = ObjectRef.from_manifest(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "a"},
        }
    )
    assert ref == ObjectRef(api_version="apps/v1", kind="Deployment", namespace="a", name="web")
    assert ref.key == "apps/v1/Deployment/a/web"
    assert ref.group == "apps"
    assert str(ref) == "Deployment a/web"
    cluster = ObjectRef.from_manifest(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    )
    assert cluster.namespace is None
    assert cluster.key == "v1/Namespace//a"
    assert cluster.group == ""
    with pytest.raises(ValueError, match=r"no metadata\.name"):
        ObjectRef.from_manifest({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    with pytest.raises(ValueError, match="no apiVersion/kind"):
        ObjectRef.from_manifest({"metadata": {"name": "x"}})


def test_scope_from_table_and_from_crds() -> None:
    scopes = crd_scopes(
        [
            crd("toy.example.com", "Widget", "Cluster"),
            crd("toy.example.com", "Gadget", "Namespaced"),
        ]
    )
    assert scopes == {("toy.example.com", "Widget"): True, ("toy.example.com", "Gadget"): False}
    assert is_cluster_scoped({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"})
    assert is_cluster_scoped({"apiVersion": "v1", "kind": "Namespace"})
    assert not is_cluster_scoped({"apiVersion": "v1", "kind": "ConfigMap"})
    assert is_cluster_scoped({"apiVersion": "toy.example.com/v1", "kind": "Widget"}, scopes)
    assert not is_cluster_scoped({"apiVersion": "toy.example.com/v1", "kind": "Gadget"}, scopes)
    # Unknown custom kinds are namespaced, even when they share a name with a built-in kind.
    assert not is_cluster_scoped({"apiVersion": "toy.example.com/v1", "kind": "Namespace"})


def test_with_default_namespace() -> None:
    objects: list[KubeObject] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "other"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c", "namespace": "oops"}},
        crd("toy.example.com", "Widget", "Cluster"),
        {"apiVersion": "toy.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
        {"apiVersion": "other.example.com/v1", "kind": "Thing", "metadata": {"name": "t"}},
    ]
    result = with_default_namespace(objects, "demo")
    assert [o["metadata"].get("namespace") for o in result] == [
        "demo",
        "other",
        None,
        None,
        None,
        "demo",
    ]
    assert objects[0]["metadata"] == {"name": "a"}  # the input is left alone
    assert objects[2]["metadata"]["namespace"] == "oops"
    # Scopes of CRDs installed earlier (not in this batch) can be passed in.
    (thing,) = with_default_namespace(
        [objects[-1]], "demo", extra_crds={("other.example.com", "Thing"): True}
    )
    assert "namespace" not in thing["metadata"]
