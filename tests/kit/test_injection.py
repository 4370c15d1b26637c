"""Namespace injection markers: the operation they declare, what they find, the check."""

from __future__ import annotations

from adapters.kit.declare.checks import CheckContext
from adapters.kit.declare.injection import (
    InjectionMarker,
    MarkerField,
    injected_namespaces_have_sidecars,
    namespace_injection_operation,
)
from adapters.kit.declare.operations import Ownership
from adapters.kit.declare.sources import ObjectsSource, PlanContext
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.records import Severity
from tests.kit.in_memory_cluster import InMemoryCluster

ANNOTATION = InjectionMarker(field=MarkerField.ANNOTATION, key="mesh.io/inject", value="enabled")
LABEL = InjectionMarker(field=MarkerField.LABEL, key="mesh-injection", value="enabled")


def namespace(name: str, **metadata: dict[str, str]) -> KubeObject:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **metadata}}


def pod(name: str, namespace: str, *containers: str, **metadata: dict[str, str]) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, **metadata},
        "spec": {"containers": [{"name": c} for c in containers]},
    }


async def test_operation_owns_only_the_marker_field_of_the_request_namespace() -> None:
    spec = namespace_injection_operation(ANNOTATION, default_namespace="default")
    assert (spec.id, spec.ownership) == ("inject-namespace", Ownership.FIELDS)
    assert "annotation mesh.io/inject=enabled" in spec.description
    ctx = PlanContext(
        mesh="m",
        operation=spec.id,
        namespace="shop",
        mesh_version="",
        parameters={},
        delete=False,
        cluster=InMemoryCluster(),
    )
    [source] = spec.sources
    assert isinstance(source, ObjectsSource)
    objects = await source.build(ctx)
    assert objects == [namespace("shop", annotations={"mesh.io/inject": "enabled"})]
    assert (ANNOTATION.as_annotation, ANNOTATION.as_label) == (("mesh.io/inject", "enabled"), None)
    assert (LABEL.as_label, LABEL.as_annotation) == (("mesh-injection", "enabled"), None)


async def test_markers_find_namespaces_by_their_own_field_and_value() -> None:
    cluster = InMemoryCluster(
        [
            namespace("a", annotations={"mesh.io/inject": "enabled"}),
            namespace("b", annotations={"mesh.io/inject": "disabled"}),
            namespace("c", labels={"mesh.io/inject": "enabled"}),
            namespace("d", labels={"mesh-injection": "enabled"}),
        ]
    )
    assert await ANNOTATION.namespaces(cluster) == ["a"]
    assert await LABEL.namespaces(cluster) == ["d"]


async def test_check_lists_namespaces_and_warns_about_pods_without_the_sidecar() -> None:
    check = injected_namespaces_have_sidecars(
        ANNOTATION, container="proxy", opt_out=("mesh.io/inject", "disabled")
    )
    cluster = InMemoryCluster(
        [
            namespace("shop", annotations={"mesh.io/inject": "enabled"}),
            namespace("blog", annotations={"mesh.io/inject": "enabled"}),
            pod("meshed", "shop", "app", "proxy"),
            pod("bare", "shop", "app"),
            pod("opted-out", "shop", "app", annotations={"mesh.io/inject": "disabled"}),
            pod("meshed", "blog", "app", "proxy"),
        ]
    )
    ctx = CheckContext(mesh="m", namespace="mesh", parameters={}, cluster=cluster)
    findings = await check(ctx)
    assert [(f.severity, f.summary) for f in findings] == [
        (Severity.INFO, "injection enabled in 2 namespaces: blog, shop"),
        (Severity.INFO, "all 1 pods in blog have the proxy sidecar"),
        (Severity.WARNING, "1 pods in shop run without the proxy sidecar"),
    ]
    assert findings[2].details.endswith("\nbare")
    empty = await check(
        CheckContext(mesh="m", namespace="x", parameters={}, cluster=InMemoryCluster())
    )
    assert [f.severity for f in empty] == [Severity.INFO]
    assert "no namespace is marked" in empty[0].summary
