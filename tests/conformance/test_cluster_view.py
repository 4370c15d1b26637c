"""The suite's own cluster reader finds every labelled object, of any kind, across pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.conformance import ClusterView, ClusterViewError, ManagedObject
from adapters.conformance import cluster_view as view_module
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model import plans
from kubesim.harness import RunningSim

OURS = {"app.kubernetes.io/managed-by": "meshplane", "meshplane.io/release": "sample"}


def config_map(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
    }


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.io"},
    "spec": {
        "group": "example.io",
        "scope": "Namespaced",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    },
}


def test_the_labels_are_the_kits() -> None:
    """A third-party adapter follows the documented labels; ours must put the same ones on."""
    assert view_module.MANAGED_BY_LABEL == plans.MANAGED_BY_LABEL
    assert view_module.MANAGED_BY_VALUE == plans.MANAGED_BY_VALUE
    assert view_module.RELEASE_LABEL == plans.RELEASE_LABEL
    assert view_module.MESH_LABEL == plans.MESH_LABEL


async def test_labelled_objects_of_every_kind_across_pages(kubesim: RunningSim) -> None:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
        for namespace in ("alpha", "beta"):
            await session.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
        for index in range(5):
            await session.apply(config_map(f"ours-{index}", ("alpha", "beta")[index % 2], OURS))
        await session.apply(config_map("theirs", "alpha", {"app": "other"}))
        await session.apply(WIDGET_CRD)
        await session.apply(
            {
                "apiVersion": "example.io/v1",
                "kind": "Widget",
                "metadata": {"name": "w", "namespace": "beta", "labels": OURS},
            }
        )
        await session.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "ours", "labels": OURS},
                "rules": [],
            }
        )

    async with await ClusterView.connect(kubesim.kubeconfig, page_size=2) as view:
        found = await view.labelled()
        assert await view.config_map_exists("alpha", "ours-0")
        assert not await view.config_map_exists("alpha", "ours-1")

    expected = {
        ManagedObject(
            group="", kind="ConfigMap", namespace=("alpha", "beta")[i % 2], name=f"ours-{i}"
        )
        for i in range(5)
    } | {
        ManagedObject(group="example.io", kind="Widget", namespace="beta", name="w"),
        ManagedObject(
            group="rbac.authorization.k8s.io", kind="ClusterRole", namespace="", name="ours"
        ),
    }
    assert set(found) == expected
    assert all(labels["meshplane.io/release"] == "sample" for labels in found.values())
    widget = ManagedObject(group="example.io", kind="Widget", namespace="beta", name="w")
    assert str(widget) == "Widget.example.io beta/w"


async def test_an_unusable_kubeconfig_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ClusterViewError, match="cannot load kubeconfig"):
        await ClusterView.connect(tmp_path / "missing")
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\n", encoding="utf-8")
    with pytest.raises(ClusterViewError, match="cannot load kubeconfig"):
        await ClusterView.connect(broken)
