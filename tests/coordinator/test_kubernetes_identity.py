"""--authn-kubernetes and --authz-kubernetes against kubesim: ServiceAccount tokens checked by
TokenReview, every call decided by a SubjectAccessReview, so editing a RoleBinding changes what
a caller may do."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import yaml

from coordinator.server.identity.permissions import Role, cluster_role_rules
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.coordinator.identities import status_with_token
from tests.coordinator.routing_harness import Client, RunningFake, kubernetes_mode
from tests.kubesim.support import raw_request

RBAC = "/apis/rbac.authorization.k8s.io/v1"
ROBOT = "system:serviceaccount:apps:robot"
CACHE_SECONDS = 0.2


async def _post(sim: RunningSim, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = await asyncio.to_thread(raw_request, sim, "POST", path, body)
    assert status == 201, answer
    result: dict[str, Any] = answer
    return result


async def _delete(sim: RunningSim, path: str) -> None:
    status, answer = await asyncio.to_thread(raw_request, sim, "DELETE", path)
    assert status == 200, answer


def _binding(kind: str, name: str, role: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": name},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"meshplane-{role}",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "apps"}],
    }


async def _token(sim: RunningSim, audiences: list[str]) -> str:
    answer = await _post(
        sim,
        "/api/v1/namespaces/apps/serviceaccounts/robot/token",
        {"kind": "TokenRequest", "spec": {"audiences": audiences}},
    )
    return str(answer["status"]["token"])


@dataclass(kw_only=True)
class Cluster:
    sim: RunningSim
    adapter: RunningFake
    client: Client
    token: str

    async def code(self, call: Any, *, token: str | None = None, **request: Any) -> Any:
        """The status of ``call`` (a stub method name) made with the robot's token."""
        return await status_with_token(
            self.client.coordinator.address, call, request.pop("message"), token or self.token
        )

    async def until(self, expected: Any, call: str, message: Any) -> str:
        """Ask again (answers are cached briefly) until the call ends with ``expected``."""
        async with asyncio.timeout(15):
            while True:
                code, details = await self.code(call, message=message)
                if code == expected:
                    return str(details)
                await asyncio.sleep(CACHE_SECONDS / 2)


def _sample(namespace: str) -> cpb.ApplyOperationRequest:
    return cpb.ApplyOperationRequest(
        mesh="istio", request=apb.ApplyOperationRequest(operation="bookinfo", namespace=namespace)
    )


@pytest.fixture
async def cluster(kubesim: RunningSim, tmp_path: Path) -> AsyncIterator[Cluster]:
    """kubesim with the example ClusterRoles and a ServiceAccount apps/robot (bound to nothing),
    and a coordinator in Kubernetes mode only (no token file) in front of a fake istio."""
    await _post(kubesim, "/api/v1/namespaces", {"metadata": {"name": "apps"}})
    await _post(kubesim, "/api/v1/namespaces/apps/serviceaccounts", {"metadata": {"name": "robot"}})
    for role in Role:
        if role is not Role.NONE:
            await _post(
                kubesim,
                f"{RBAC}/clusterroles",
                {
                    "metadata": {"name": f"meshplane-{role.name.lower()}"},
                    "rules": cluster_role_rules(role),
                },
            )
    token = await _token(kubesim, ["meshplane"])
    async with kubernetes_mode(
        tmp_path, kubeconfig=kubesim.kubeconfig, audience="meshplane", cache_seconds=CACHE_SECONDS
    ) as (client, adapter):
        yield Cluster(sim=kubesim, adapter=adapter, client=client, token=token)


async def test_role_bindings_decide_and_editing_them_changes_the_answer(
    cluster: Cluster,
) -> None:
    listing = cpb.ListAdaptersRequest()
    # A valid ServiceAccount token, but no binding: every call is refused, naming the access.
    code, details = await cluster.code("ListAdapters", message=listing)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert f"{ROBOT!r} may not list adapters (meshplane.io) cluster-wide" in details
    assert "Kubernetes RBAC does not allow it" in details

    # An operator RoleBinding in "apps": sample apps there, nowhere else, and no cluster-wide
    # listing (a RoleBinding grants within its namespace only).
    await _post(
        cluster.sim,
        f"{RBAC}/namespaces/apps/rolebindings",
        _binding("RoleBinding", "robot-operates", "operator"),
    )
    await cluster.until(grpc.StatusCode.OK, "ApplyOperation", _sample("apps"))
    code, details = await cluster.code("ApplyOperation", message=_sample("other"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "create operations (meshplane.io) in namespace other" in details
    assert (await cluster.code("ListAdapters", message=listing))[0] == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    sent = cluster.adapter.fake.calls("ApplyOperation")[-1]
    assert sent.username == ROBOT and sent.namespace == "apps"
    received = cluster.adapter.fake.received[-1].metadata
    assert received["x-meshplane-subject"] == ROBOT
    assert "system:serviceaccounts:apps" in received["x-meshplane-groups"].split(",")

    # A viewer ClusterRoleBinding: cluster-wide reads.
    await _post(
        cluster.sim,
        f"{RBAC}/clusterrolebindings",
        _binding("ClusterRoleBinding", "robot-views", "viewer"),
    )
    await cluster.until(grpc.StatusCode.OK, "ListAdapters", listing)

    # The RoleBinding deleted: sample apps in "apps" are refused again.
    await _delete(cluster.sim, f"{RBAC}/namespaces/apps/rolebindings/robot-operates")
    await cluster.until(grpc.StatusCode.PERMISSION_DENIED, "ApplyOperation", _sample("apps"))

    # The audit trail says how the robot authenticated.
    records, _ = await cluster.client.coordinator.store.list_audit_records()
    assert {r.authenticated_by for r in records if r.subject == ROBOT} == {"kubernetes"}


async def test_tokens_the_cluster_does_not_accept_are_unauthenticated(cluster: Cluster) -> None:
    listing = cpb.ListAdaptersRequest()
    # A token for the API server's audience, not meshplane's.
    other = await _token(cluster.sim, ["https://kubernetes.default.svc.cluster.local"])
    for token in (other, "not-a-jwt", cluster.token[:-4] + "AAAA"):
        code, details = await cluster.code("ListAdapters", token=token, message=listing)
        assert code == grpc.StatusCode.UNAUTHENTICATED, token
        assert "not valid" in details
    # The ServiceAccount deleted: its token no longer authenticates (once the cache expires).
    await _delete(cluster.sim, "/api/v1/namespaces/apps/serviceaccounts/robot")
    await cluster.until(grpc.StatusCode.UNAUTHENTICATED, "ListAdapters", listing)


async def test_an_api_server_that_cannot_be_asked_makes_calls_unavailable(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    # The same kubeconfig, pointed at a loopback port where nothing listens any more.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config = yaml.safe_load(kubesim.kubeconfig.read_text())
    for entry in config["clusters"]:
        scheme = entry["cluster"]["server"].split("://", 1)[0]
        entry["cluster"]["server"] = f"{scheme}://127.0.0.1:{closed_port}"
    away = tmp_path / "away.kubeconfig"
    away.write_text(yaml.safe_dump(config))
    async with kubernetes_mode(
        tmp_path, kubeconfig=away, audience="meshplane", cache_seconds=CACHE_SECONDS
    ) as (client, _):
        code, details = await status_with_token(
            client.coordinator.address, "ListAdapters", cpb.ListAdaptersRequest(), "some-token"
        )
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("cannot check the token with the Kubernetes TokenReview API: ")
    assert len(details) < 400
