"""Kubernetes discovery against kubesim: Services + EndpointSlices → replicas → routed calls."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kubernetes import client as kube

from coordinator.server.kube_discovery import KubeDiscovery, replicas_from_slices
from coordinator.server.registry import Registry
from coordinator.server.replicas import Source
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from serving.tls import dial
from tests.coordinator.routing_harness import (
    Client,
    RunningFake,
    coordinator,
    fakes,
    make_settings,
)

NAMESPACE = "meshplane"


def _service(name: str, mesh: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"meshplane.io/adapter": mesh}},
        # No selector: the endpoints are ours to write, pointing at in-test adapters.
        "spec": {"ports": [{"name": "grpc", "port": 10000}]},
    }


def _slice(service: str, port: int, endpoints: list[tuple[str, bool]]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-1",
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "ports": [{"name": "metrics", "port": 9090}, {"name": "grpc", "port": port}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints
        ],
    }


def test_ready_endpoints_with_the_grpc_port_are_replicas() -> None:
    slices = [
        _slice("istio-adapter", 10000, [("10.0.0.1", True), ("10.0.0.2", False)]),
        _slice("unrelated", 80, [("10.0.0.3", True)]),
        {
            "metadata": {"name": "x", "labels": {"kubernetes.io/service-name": "istio-adapter"}},
            "ports": [{"port": 7000}],
            "endpoints": [{"addresses": ["fd00::1"]}],  # no conditions: ready
        },
    ]
    assert replicas_from_slices({"istio-adapter": "istio"}, slices) == {
        "10.0.0.1:10000": "istio",
        "[fd00::1]:7000": "istio",
    }


async def publish(core: Any, discovery: Any, service: str, port: int) -> None:
    """An adapter Service and its EndpointSlice with one ready endpoint on loopback ``port``."""
    await asyncio.to_thread(core.create_namespaced_service, NAMESPACE, _service(service, "istio"))
    await asyncio.to_thread(
        discovery.create_namespaced_endpoint_slice,
        NAMESPACE,
        _slice(service, port, [("127.0.0.1", True)]),
    )


async def installed_on(client: Client) -> str:
    """Apply an Istio install through the coordinator; the replica it was routed to."""
    answer = await client.stub.ApplyOperation(
        cpb.ApplyOperationRequest(
            mesh="istio", request=apb.ApplyOperationRequest(operation="install")
        )
    )
    return str(answer.operation.adapter_address)


async def assert_found_and_routed_to(client: Client, first: RunningFake) -> None:
    await client.wait_serving(first.address)
    replica = await client.replica(first.address)
    assert replica is not None
    assert replica.source == cpb.REGISTRATION_SOURCE_KUBERNETES
    assert await installed_on(client) == first.address
    assert len(first.fake.calls("ApplyOperation")) == 1


async def assert_not_ready_endpoint_leaves(
    client: Client, discovery: Any, first: RunningFake, second: RunningFake
) -> None:
    """The first endpoint turns not ready: it leaves the registry, calls go to the second."""
    await asyncio.to_thread(
        discovery.replace_namespaced_endpoint_slice,
        "istio-adapter-1",
        NAMESPACE,
        _slice("istio-adapter", first.server.port, [("127.0.0.1", False)]),
    )
    await client.wait_replica(first.address, lambda r: r is None)
    for _ in range(3):
        assert await installed_on(client) == second.address


async def assert_deleted_service_leaves(client: Client, core: Any, second: RunningFake) -> None:
    """Deleting the Service removes its replicas even while the slice lingers."""
    await asyncio.to_thread(core.delete_namespaced_service, "istio-canary", NAMESPACE)
    await client.wait_replica(second.address, lambda r: r is None)
    listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest())
    assert list(listed.adapters) == []


async def test_discovery_finds_routes_to_and_drops_adapters(
    kubesim: RunningSim, api_client: kube.ApiClient, tmp_path: Path
) -> None:
    core: Any = kube.CoreV1Api(api_client)
    discovery: Any = kube.DiscoveryV1Api(api_client)
    await asyncio.to_thread(
        core.create_namespace,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    async with fakes(("istio", "k1"), ("istio", "k2")) as (first, second):
        assert first.server.port != second.server.port
        await publish(core, discovery, "istio-adapter", first.server.port)
        settings = make_settings(
            tmp_path, discover_namespace=NAMESPACE, kubeconfig=kubesim.kubeconfig
        )
        async with coordinator(settings) as client:
            await assert_found_and_routed_to(client, first)
            # A second Service's slice, found through the watch (not the initial list).
            await publish(core, discovery, "istio-canary", second.server.port)
            await client.wait_serving(second.address)
            await assert_not_ready_endpoint_leaves(client, discovery, first, second)
            await assert_deleted_service_leaves(client, core, second)


async def test_watches_resume_after_the_server_ends_them(
    kubesim: RunningSim, api_client: kube.ApiClient
) -> None:
    core: Any = kube.CoreV1Api(api_client)
    slices: Any = kube.DiscoveryV1Api(api_client)
    await asyncio.to_thread(
        core.create_namespace,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    registry = Registry(lambda address: dial(address, tls=None), call_timeout=1.0)
    discovery = KubeDiscovery(
        registry, namespace=NAMESPACE, kubeconfig=kubesim.kubeconfig, watch_seconds=1
    )
    both_found = asyncio.Event()
    registry.add_listener(
        lambda _: both_found.set() if len(registry.replicas("linkerd")) >= 2 else None
    )
    await discovery.start()
    try:
        await asyncio.wait_for(discovery.wait_synced(), 10)
        await asyncio.sleep(2.5)  # every watch request has ended at least twice by now
        await asyncio.to_thread(
            core.create_namespaced_service, NAMESPACE, _service("late-adapter", "linkerd")
        )
        await asyncio.to_thread(
            slices.create_namespaced_endpoint_slice,
            NAMESPACE,
            _slice("late-adapter", 4143, [("127.0.0.1", True), ("127.0.0.2", True)]),
        )
        await asyncio.wait_for(both_found.wait(), 10)
        found = registry.replicas("linkerd")
        assert [r.address for r in found] == ["127.0.0.1:4143", "127.0.0.2:4143"]
        assert {r.source for r in found} == {Source.KUBERNETES}
    finally:
        await discovery.stop()
        await registry.close()
