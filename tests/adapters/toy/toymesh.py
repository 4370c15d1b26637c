"""Toymesh, the smallest real adapter (docs/writing-an-adapter.md): declarations only.

One chart (controller, CRD, custom resource), a sample built from parameters, validate, custom;
the kit plans, applies, waits, reports and serves gRPC. Run it with
`meshplane adapter tests.adapters.toy.toymesh:DECLARATION --chart-repo URL --kubeconfig PATH`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from adapters.kit import (
    Category,
    ChartSource,
    KubeObject,
    MeshDeclaration,
    ObjectsSource,
    OperationSpec,
    Parameter,
    PlanContext,
    all_of,
    crds_established,
    custom_operation,
    deployments_ready,
    integer_parameter,
    namespaced_object,
    validate_operation,
)

CONTROL_PLANE_NAMESPACE = "toymesh-system"
GREETINGS = "toymesh.example.io/v1alpha1"


async def control_plane_values(ctx: PlanContext) -> Mapping[str, Any]:
    """Chart values from the request's parameters."""
    return {"replicas": int(ctx.parameters["replicas"]), "greeting": ctx.parameters["greeting"]}


async def greeter(ctx: PlanContext) -> Sequence[KubeObject]:
    """The sample app: a Deployment and its Service, plus a Greeting when the mesh is there."""
    labels = {"app": "greeter"}
    make = partial(namespaced_object, name="greeter", namespace=ctx.namespace, labels=labels)
    pod = {"containers": [{"name": "app", "image": "example/greeter:1.0"}]}
    template = {"metadata": {"labels": labels}, "spec": pod}
    replicas = int(ctx.parameters["replicas"])
    deployment = {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template}
    objects = [
        make(api_version="apps/v1", kind="Deployment", spec=deployment),
        make(api_version="v1", kind="Service", spec={"selector": labels, "ports": [{"port": 80}]}),
    ]
    if await ctx.cluster.has_kind(GREETINGS, "Greeting"):
        objects.append(make(api_version=GREETINGS, kind="Greeting", spec={"message": "hi"}))
    return objects


DECLARATION = MeshDeclaration(
    mesh="toymesh",
    default_port=10099,
    chart_repository="https://charts.toymesh.example/",
    manifests_url="https://manifests.toymesh.example/{version}/",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    operations=(
        OperationSpec(
            id="install",
            category=Category.INSTALL,
            description="Install, upgrade (a newer mesh_version) or uninstall (delete) toymesh",
            default_namespace=CONTROL_PLANE_NAMESPACE,
            parameters=(
                Parameter(
                    name="replicas",
                    description="Controller replicas (1-3)",
                    default="1",
                    check=integer_parameter(minimum=1, maximum=3),
                ),
                Parameter(name="greeting", description="Mesh-wide greeting", default="hello"),
            ),
            sources=(ChartSource(chart="toymesh", release="toymesh", values=control_plane_values),),
            uses_mesh_version=True,
        ),
        OperationSpec(
            id="greeter",
            category=Category.SAMPLE_APPLICATION,
            description="Deploy the greeter sample (and its Greeting when toymesh is installed)",
            default_namespace="default",
            parameters=(
                Parameter(name="replicas", description="Pods", default="1", allowed=("1", "2")),
            ),
            sources=(ObjectsSource(build=greeter),),
        ),
        validate_operation(
            all_of(
                crds_established("toymesh.example.io", what="toymesh"),
                deployments_ready("toymesh-controller"),
            ),
            description="Check the Greeting CRD and the controller",
            default_namespace=CONTROL_PLANE_NAMESPACE,
        ),
        custom_operation(default_namespace="default"),
    ),
)
