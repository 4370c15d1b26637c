"""The coordinator against the real API server (issue 14): Kubernetes discovery of adapters,
TokenReview authentication and SubjectAccessReview authorization.

The coordinator runs as the ServiceAccount the Helm chart (deploy/helm/meshplane) creates for
it, with only the RBAC objects the chart renders (a ClusterRole for TokenReviews and
SubjectAccessReviews, a Role to watch Services and EndpointSlices in its namespace), reached
through a kubeconfig holding that ServiceAccount's token. Callers are ServiceAccounts with real
bound tokens; the chart's example ClusterRoles (meshplane-viewer, -operator, -admin) are bound to
them, and every access of the permission table is asked of the real authorizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from coordinator.server.identity.access_review import SubjectAccessReviewAuthorizer
from coordinator.server.identity.permissions import GRANTS, Access, Role
from coordinator.server.identity.subjects import Subject
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from realkube.control_plane import ControlPlane
from tests.coordinator.identities import status_with_token
from tests.coordinator.routing_harness import Client, coordinator, kubernetes_mode, make_settings
from tests.deploy.chart import NAMESPACE, render
from tests.plugins.realkube import RealCluster
from tests.realkube.service_accounts import (
    apply_objects,
    bind_cluster_role,
    kubectl,
    service_account,
    token_for,
    token_kubeconfig,
)

pytestmark = pytest.mark.realkube

AUDIENCE = "meshplane"
CALLERS = "apps"
RBAC_KINDS = frozenset(
    {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
)
CACHE_SECONDS = 0.2


@dataclass(frozen=True, kw_only=True)
class ChartIdentity:
    """The coordinator's ServiceAccount as the chart makes it, and a kubeconfig with its token."""

    username: str
    kubeconfig: Path


async def chart_rbac() -> list[dict[str, Any]]:
    """The chart's coordinator and access RBAC objects (and its ServiceAccount), as rendered."""
    rendered = await render({"auth": {"kubernetes": {"audiences": [AUDIENCE]}}})
    return [
        dict(o)
        for o in rendered.objects
        if o["kind"] in RBAC_KINDS
        and o["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        in ("coordinator", "access")
    ]


@pytest.fixture
async def chart_identity(
    real_cluster: RealCluster, real_kube: ControlPlane, tmp_path: Path
) -> AsyncIterator[ChartIdentity]:
    """The chart's coordinator RBAC and example roles applied to the real cluster; removed
    afterwards with the namespaces the test used."""
    objects = await chart_rbac()
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    name = account["metadata"]["name"]
    service_account(real_kube, NAMESPACE, name)
    service_account(real_kube, CALLERS, "robot")
    await asyncio.to_thread(apply_objects, real_kube, *objects)
    token = token_for(real_kube, NAMESPACE, name)
    try:
        yield ChartIdentity(
            username=f"system:serviceaccount:{NAMESPACE}:{name}",
            kubeconfig=token_kubeconfig(real_kube, token, tmp_path / "coordinator.kubeconfig"),
        )
    finally:
        for obj in objects:
            if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                kubectl(real_kube, "delete", obj["kind"].lower(), obj["metadata"]["name"],
                        "--ignore-not-found")  # fmt: skip
        # The namespaces stay (deleting one takes a while; the next test would find it
        # terminating); what the tests put in them they delete.


# -- discovery -------------------------------------------------------------------------------


def adapter_service(name: str, mesh: str, *, selector: dict[str, str]) -> dict[str, Any]:
    """A Service for ``selector``'s Pods, labelled as ``mesh``'s adapter (none: unlabelled)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"meshplane.io/adapter": mesh} if mesh else {},
        },
        "spec": {
            "selector": selector,
            "ports": [{"name": "grpc", "port": 10000, "targetPort": 10000}],
        },
    }


def adapter_pods(name: str, replicas: int) -> dict[str, Any]:
    """A Deployment whose Pods kwok schedules and makes Ready (no container runs)."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "adapter",
                            "image": "meshplane:test",
                            "ports": [{"name": "grpc", "containerPort": 10000}],
                        }
                    ],
                    "tolerations": [{"operator": "Exists"}],
                },
            },
        },
    }


async def replicas_of(client: Client, mesh: str) -> list[cpb.AdapterReplica]:
    listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=10)
    return [r for a in listed.adapters if a.mesh == mesh for r in a.replicas]


async def until_replicas(client: Client, mesh: str, count: int) -> list[cpb.AdapterReplica]:
    """Until ListAdapters shows ``count`` replicas of ``mesh`` (the real controllers and the
    watch take their time; bounded)."""
    async with asyncio.timeout(120):
        while True:
            found = await replicas_of(client, mesh)
            if len(found) == count:
                return found
            await asyncio.sleep(0.2)


@pytest.mark.timeout(600)
async def test_discovery_follows_what_the_real_controllers_publish(
    chart_identity: ChartIdentity, real_kube: ControlPlane, tmp_path: Path
) -> None:
    """An adapter Service's EndpointSlices come from the real EndpointSlice controller (its
    Pods made Ready by kwok); the coordinator, with the chart's discovery Role only, follows
    them. (The real server refuses loopback addresses in an EndpointSlice, so no slice can
    point at an adapter in this namespace: routing through a found replica is proven against
    kubesim, tests/coordinator/test_kube_discovery.py.)"""
    apply_objects(
        real_kube,
        adapter_service("linkerd-adapter", "linkerd", selector={"app": "linkerd-adapter"}),
        adapter_pods("linkerd-adapter", 2),
        adapter_service("unlabelled", "", selector={"app": "linkerd-adapter"}),
    )
    settings = make_settings(
        tmp_path,
        discover_namespace=NAMESPACE,
        kubeconfig=chart_identity.kubeconfig,
        # Pod IPs are not loopback: plaintext to them is refused unless allowed.
        allow_insecure_adapters=True,
    )
    try:
        async with coordinator(settings) as client:
            # Both Pods Ready, with kwok's addresses: two replicas at the Pods' IPs (nothing
            # serves them in this namespace, so they never turn healthy).
            pods = await until_replicas(client, "linkerd", 2)
            pod_ips = kubectl(real_kube, "get", "pods", "-n", NAMESPACE, "-l",
                              "app=linkerd-adapter", "-o",
                              "jsonpath={.items[*].status.podIP}").split()  # fmt: skip
            assert sorted(r.address for r in pods) == sorted(f"{ip}:10000" for ip in pod_ips)
            assert {r.source for r in pods} == {cpb.REGISTRATION_SOURCE_KUBERNETES}
            listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=10)
            assert [a.mesh for a in listed.adapters] == ["linkerd"]  # not the unlabelled one

            # Scaled to one: the controller drops an endpoint, the coordinator a replica.
            kubectl(real_kube, "scale", "deployment/linkerd-adapter", "-n", NAMESPACE,
                    "--replicas=1")  # fmt: skip
            (left,) = await until_replicas(client, "linkerd", 1)
            assert left.address in {r.address for r in pods}
            # The Service deleted: its replica goes even while its slice is being collected.
            kubectl(real_kube, "delete", "service", "linkerd-adapter", "-n", NAMESPACE)
            await until_replicas(client, "linkerd", 0)
    finally:
        kubectl(real_kube, "delete", "deployment/linkerd-adapter", "service/linkerd-adapter",
                "service/unlabelled", "-n", NAMESPACE, "--ignore-not-found")  # fmt: skip


# -- TokenReview and SubjectAccessReview -----------------------------------------------------


@dataclass(kw_only=True)
class Gate:
    """A coordinator in Kubernetes mode in front of a fake istio adapter."""

    plane: ControlPlane
    client: Client
    adapter: Any
    robot_token: str

    async def call(self, method: str, message: Any, *, token: str = "") -> tuple[Any, str]:
        """(status code, details) of ``method`` called with ``token`` (the robot's)."""
        code, details = await status_with_token(
            self.client.coordinator.address, method, message, token or self.robot_token
        )
        return code, str(details)

    async def until(self, expected: Any, method: str, message: Any) -> str:
        """Ask again (answers are cached for a moment, RBAC informers lag) until ``expected``."""
        async with asyncio.timeout(30):
            while True:
                code, details = await self.call(method, message)
                if code == expected:
                    return details
                await asyncio.sleep(CACHE_SECONDS)


def sample_in(namespace: str) -> cpb.ApplyOperationRequest:
    return cpb.ApplyOperationRequest(
        mesh="istio", request=apb.ApplyOperationRequest(operation="bookinfo", namespace=namespace)
    )


@pytest.fixture
async def gate(
    chart_identity: ChartIdentity, real_kube: ControlPlane, tmp_path: Path
) -> AsyncIterator[Gate]:
    async with kubernetes_mode(
        tmp_path,
        kubeconfig=chart_identity.kubeconfig,
        audience=AUDIENCE,
        cache_seconds=CACHE_SECONDS,
    ) as (client, adapter):
        yield Gate(
            plane=real_kube,
            client=client,
            adapter=adapter,
            robot_token=token_for(real_kube, CALLERS, "robot", audiences=[AUDIENCE]),
        )


ROBOT = f"system:serviceaccount:{CALLERS}:robot"


@pytest.mark.timeout(600)
async def test_real_tokens_and_rbac_decide_who_may_do_what(gate: Gate) -> None:
    listing = cpb.ListAdaptersRequest()
    # A real token, bound to nothing: authenticated, and refused naming the access.
    code, details = await gate.call("ListAdapters", listing)
    assert code == grpc.StatusCode.PERMISSION_DENIED, details
    assert f"{ROBOT!r} may not list adapters (meshplane.io) cluster-wide" in details
    assert "Kubernetes RBAC does not allow it" in details

    # Tokens the API server does not accept for meshplane: unauthenticated.
    kube_audience = token_for(gate.plane, CALLERS, "robot")  # the API server's own audience
    for token in (kube_audience, "not-a-jwt", gate.robot_token[:-6] + "AAAAAA"):
        code, details = await gate.call("ListAdapters", listing, token=token)
        assert code == grpc.StatusCode.UNAUTHENTICATED, (token[:20], details)
        assert "not valid" in details

    # The chart's operator role in one namespace (a RoleBinding): sample apps there only.
    bind_cluster_role(gate.plane, "meshplane-operator", subject=(CALLERS, "robot"),
                      binding="robot-operates", namespace=CALLERS)  # fmt: skip
    await gate.until(grpc.StatusCode.OK, "ApplyOperation", sample_in(CALLERS))
    code, details = await gate.call("ApplyOperation", sample_in("default"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "create operations (meshplane.io) in namespace default" in details
    # The adapter was told who called, with the groups the API server vouched for.
    sent = gate.adapter.fake.calls("ApplyOperation")[-1]
    assert sent.username == ROBOT and sent.namespace == CALLERS
    received = gate.adapter.fake.received[-1].metadata
    assert received["x-meshplane-subject"] == ROBOT
    groups = set(received["x-meshplane-groups"].split(","))
    assert {"system:serviceaccounts", f"system:serviceaccounts:{CALLERS}"} <= groups
    assert received["x-meshplane-uid"]  # the ServiceAccount's uid, from TokenReview

    # The viewer role cluster-wide: listing adapters works, installing a mesh still does not.
    bind_cluster_role(gate.plane, "meshplane-viewer", subject=(CALLERS, "robot"),
                      binding="robot-views")  # fmt: skip
    await gate.until(grpc.StatusCode.OK, "ListAdapters", listing)
    install = cpb.ApplyOperationRequest(
        mesh="istio", request=apb.ApplyOperationRequest(operation="install")
    )
    code, details = await gate.call("ApplyOperation", install)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "create meshes (meshplane.io)" in details

    # Unbound again: refused again (once the cache and RBAC's informers caught up).
    kubectl(gate.plane, "delete", "rolebinding", "robot-operates", "-n", CALLERS)
    await gate.until(grpc.StatusCode.PERMISSION_DENIED, "ApplyOperation", sample_in(CALLERS))
    kubectl(gate.plane, "delete", "clusterrolebinding", "robot-views")

    # The ServiceAccount deleted: its token no longer authenticates.
    kubectl(gate.plane, "delete", "serviceaccount", "robot", "-n", CALLERS)
    await gate.until(grpc.StatusCode.UNAUTHENTICATED, "ListAdapters", listing)


def bind_example_roles(plane: ControlPlane, users: dict[Role, str]) -> list[str]:
    """Each user bound cluster-wide to its role's example ClusterRole; the bindings' names."""
    bindings = []
    for role, user in users.items():
        name = f"{user}-binding"
        apply_objects(
            plane,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": f"meshplane-{role.name.lower()}",
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
                ],
            },
        )
        bindings.append(name)
    return bindings


async def answers_once_granted(
    reviewer: SubjectAccessReviewAuthorizer,
    users: dict[Role, str],
    expected: dict[tuple[Role, Access], bool],
) -> dict[tuple[Role, Access], bool]:
    """Ask every (role, access) until each expected grant is allowed; the last answers."""
    answers: dict[tuple[Role, Access], bool] = {}
    async with asyncio.timeout(60):  # RBAC's informers see new bindings within moments
        while True:
            for (role, access), _ in expected.items():
                subject = Subject(user=users[role], authenticated_by="kubernetes")
                answers[(role, access)] = await reviewer.authorize(subject, access) is None
            if all(answers[key] for key, allowed in expected.items() if allowed):
                return answers
            await asyncio.sleep(0.2)


@pytest.mark.timeout(600)
async def test_the_charts_example_roles_grant_what_they_claim(
    chart_identity: ChartIdentity, real_kube: ControlPlane
) -> None:
    """Each example ClusterRole, bound to a user, is allowed exactly the accesses its built-in
    role holds (GRANTS), asked of the real authorizer through the coordinator's own
    SubjectAccessReview client, running as the chart's coordinator identity."""
    users: dict[Role, str] = {
        role: f"meshplane-test-{role.name.lower()}" for role in Role if role is not Role.NONE
    }
    bindings = bind_example_roles(real_kube, users)
    reviewer = SubjectAccessReviewAuthorizer(chart_identity.kubeconfig, cache_seconds=0)
    await reviewer.start()
    try:
        accesses = [
            Access(verb=verb, resource=resource, namespace=namespace)
            for (resource, verb) in sorted(GRANTS)
            for namespace in ("", "team")
        ]
        expected: dict[tuple[Role, Access], bool] = {
            (role, access): GRANTS[(access.resource, access.verb)] <= role
            for role in users
            for access in accesses
        }
        answers = await answers_once_granted(reviewer, users, expected)
        wrong = [
            (role.name, access.describe(), allowed)
            for (role, access), allowed in answers.items()
            if allowed != expected[(role, access)]
        ]
        assert wrong == []
        nobody = Subject(user="meshplane-test-nobody", authenticated_by="kubernetes")
        assert await reviewer.authorize(nobody, accesses[0]) is not None
    finally:
        await reviewer.stop()
        for name in bindings:
            kubectl(real_kube, "delete", "clusterrolebinding", name, "--ignore-not-found")
