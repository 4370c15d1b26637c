"""Replicas and discovery with real adapter subprocesses behind one coordinator (issue 6).

Two `meshplane adapter istio` processes on one kubesim share the work the coordinator routes;
one stopped (SIGTERM or SIGKILL) leaves rotation within seconds and the other takes every
operation; restarted, it serves again. A coordinator started with `--discover-namespace` finds a
real adapter through a labelled Service and its EndpointSlice in kubesim, routes an install to
it, and drops it when the endpoint turns not ready.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from kubernetes import client as kube

from coordinator.server.settings import CoordinatorSettings, add_arguments, settings_from_args
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.coordinator.identities import ADMIN, write_token_file
from tests.e2e.coordinator_harness import TERMINAL, Adapter, CoordinatorUnderTest
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
NAMESPACE = "meshplane-adapters"
SERVICE = "istio-adapter"
LEAVES_ROTATION_WITHIN = 5.0
"""Seconds a stopped replica may stay SERVING in ListAdapters (the health watch sees it go)."""


def coordinator_from_flags(data_dir: Path, *flags: str) -> CoordinatorSettings:
    """Settings parsed from `meshplane coordinator` flags, as a user gives them (no environment);
    only the health backoff ceiling is shortened, which has no flag, so a restart is seen soon."""
    parser = argparse.ArgumentParser(prog="meshplane coordinator")
    add_arguments(parser)
    tokens = write_token_file(data_dir / "auth")
    argv = ["--host", "127.0.0.1", "--port", "0", "--data-dir", str(data_dir), *flags]
    argv += ["--token-auth-file", str(tokens)]
    settings = settings_from_args(parser.parse_args(argv), environ={})
    return dataclasses.replace(
        settings, health_backoff_initial_seconds=0.05, health_backoff_max_seconds=0.5
    )


@pytest.fixture
def toy_sources(tmp_path: Path, static_http_server: ServerFactory) -> list[str]:
    """Adapter flags for the toy Istio chart repository and manifest mirror, served over HTTP."""
    charts = static_http_server(package_toy_repo(tmp_path / "charts"))
    mirror = static_http_server(TOY_MIRROR)
    return ["--chart-repo", charts.url, "--manifests-url", mirror.url]


def istio_replica(sim: RunningSim, sources: list[str], root: Path, name: str) -> Adapter:
    """One `meshplane adapter istio` with its own state and cache dirs, on the shared kubesim."""
    args = [
        "--kubeconfig",
        str(sim.kubeconfig),
        *sources,
        "--state-dir",
        str(root / name / "state"),
        "--cache-dir",
        str(root / name / "cache"),
        "--operation-timeout",
        "60",
    ]
    return Adapter("istio", args, root / f"{name}.log")


@pytest.fixture
async def replicas(
    kubesim: RunningSim, toy_sources: list[str], tmp_path: Path
) -> AsyncIterator[list[Adapter]]:
    adapters = [istio_replica(kubesim, toy_sources, tmp_path, name) for name in ("a", "b")]
    try:
        # Every start runs to its end (no process left unowned), then the first failure raises.
        started = await asyncio.gather(*(a.start() for a in adapters), return_exceptions=True)
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        yield adapters
    finally:
        await asyncio.gather(*(adapter.stop() for adapter in adapters))


async def replica_states(coordinator: CoordinatorUnderTest, mesh: str) -> dict[str, int]:
    """address → ReplicaState of every replica of ``mesh`` that ListAdapters shows."""
    listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
    return {
        replica.address: int(replica.state)
        for adapter in listing.adapters
        if adapter.mesh == mesh
        for replica in adapter.replicas
    }


async def wait_states(
    coordinator: CoordinatorUnderTest, expected: dict[str, int], within: float
) -> None:
    """Until ListAdapters shows exactly ``expected`` for istio (fails with the last listing)."""
    seen: dict[str, int] = {}
    try:
        async with asyncio.timeout(within):
            seen = await replica_states(coordinator, "istio")
            while seen != expected:
                await asyncio.sleep(0.05)
                seen = await replica_states(coordinator, "istio")
    except TimeoutError:
        raise AssertionError(f"after {within}s ListAdapters shows {seen}, not {expected}") from None


async def run_install(coordinator: CoordinatorUnderTest, operation_id: str) -> Any:
    """An install through the coordinator, waited for; returns the stored OperationRecord."""
    request = apb.ApplyOperationRequest(
        operation_id=operation_id,
        operation="install",
        mesh_version="1.1.0",
        parameters={"profile": "demo"},
        username=ADMIN.user,  # the caller (the harness calls as the admin)
    )
    accepted = await coordinator.apply("istio", request)
    async with asyncio.timeout(30):
        while True:
            reply = await coordinator.stub.GetOperation(
                cpb.GetOperationRequest(operation_id=operation_id), timeout=5
            )
            if reply.operation.operation.state in TERMINAL:
                break
            await asyncio.sleep(0.05)
    record = reply.operation
    assert record.operation.state == apb.OPERATION_STATE_SUCCEEDED, record.operation.error
    assert record.adapter_address == accepted.operation.adapter_address
    return record


SERVING = cpb.REPLICA_STATE_SERVING
NOT_SERVING = cpb.REPLICA_STATE_NOT_SERVING


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
async def test_two_replicas_share_work_and_one_stopped_hands_it_to_the_other(
    replicas: list[Adapter], tmp_path: Path, stop: str
) -> None:
    first, second = replicas
    coordinator = CoordinatorUnderTest(
        coordinator_from_flags(
            tmp_path / "coord",
            *("--adapter", f"istio={first.address}"),
            *("--adapter", f"istio={second.address}"),
        )
    )
    await coordinator.start()
    try:
        await wait_states(coordinator, {first.address: SERVING, second.address: SERVING}, within=20)
        records = [await run_install(coordinator, f"share-{n}") for n in range(4)]
        shared = Counter(record.adapter_address for record in records)
        assert set(shared) == {first.address, second.address}, shared

        if stop == "sigterm":
            await first.stop()
        else:
            await first.kill()
        await wait_states(
            coordinator,
            {first.address: NOT_SERVING, second.address: SERVING},
            within=LEAVES_ROTATION_WITHIN,
        )
        after = [await run_install(coordinator, f"after-{stop}-{n}") for n in range(3)]
        assert [r.adapter_address for r in after] == [second.address] * 3

        await first.start()  # same port, same state dir
        await wait_states(coordinator, {first.address: SERVING, second.address: SERVING}, within=10)
        back = [await run_install(coordinator, f"back-{n}") for n in range(2)]
        assert {r.adapter_address for r in back} == {first.address, second.address}
    finally:
        await coordinator.stop()


def _service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": SERVICE, "labels": {"meshplane.io/adapter": "istio"}},
        "spec": {"ports": [{"name": "grpc", "port": 10000}]},  # no selector: we write endpoints
    }


def _slice(port: int, *, ready: bool) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{SERVICE}-1",
            "labels": {"kubernetes.io/service-name": SERVICE},
        },
        "addressType": "IPv4",
        "ports": [{"name": "grpc", "port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}],
    }


async def publish(api_client: kube.ApiClient, port: int) -> None:
    """The adapter's Service and an EndpointSlice with one ready endpoint on loopback ``port``."""
    core: Any = kube.CoreV1Api(api_client)
    discovery: Any = kube.DiscoveryV1Api(api_client)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    await asyncio.to_thread(core.create_namespace, namespace)
    await asyncio.to_thread(core.create_namespaced_service, NAMESPACE, _service())
    await asyncio.to_thread(
        discovery.create_namespaced_endpoint_slice, NAMESPACE, _slice(port, ready=True)
    )


async def assert_found_and_installs(coordinator: CoordinatorUnderTest, adapter: Adapter) -> None:
    """The coordinator lists the discovered replica and routes an install to it."""
    port = int(adapter.address.rsplit(":", 1)[1])
    listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
    [found] = [r for a in listing.adapters for r in a.replicas]
    assert found.address == f"127.0.0.1:{port}" == adapter.address
    assert found.source == cpb.REGISTRATION_SOURCE_KUBERNETES

    record = await run_install(coordinator, "discovered-install")
    assert record.adapter_address == adapter.address
    status = await coordinator.stub.GetMeshStatus(
        cpb.GetMeshStatusRequest(mesh="istio", request=apb.GetMeshStatusRequest()), timeout=10
    )
    assert status.status.installed and status.status.version == "1.1.0"


async def assert_not_ready_leaves_nothing_to_route_to(
    coordinator: CoordinatorUnderTest, api_client: kube.ApiClient, port: int
) -> None:
    """The endpoint turns not ready: the replica leaves, and an install finds no adapter."""
    discovery: Any = kube.DiscoveryV1Api(api_client)
    await asyncio.to_thread(
        discovery.replace_namespaced_endpoint_slice,
        f"{SERVICE}-1",
        NAMESPACE,
        _slice(port, ready=False),
    )
    async with asyncio.timeout(10):
        listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        while listing.adapters:
            await asyncio.sleep(0.05)
            listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await coordinator.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="istio", request=apb.ApplyOperationRequest(operation="install")
            ),
            timeout=5,
        )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND, refused.value.details()


async def test_discovery_finds_a_real_adapter_routes_to_it_and_drops_it(
    kubesim: RunningSim,
    api_client: kube.ApiClient,
    toy_sources: list[str],
    tmp_path: Path,
) -> None:
    adapter = istio_replica(kubesim, toy_sources, tmp_path, "discovered")
    await adapter.start()
    coordinator: CoordinatorUnderTest | None = None
    try:
        port = int(adapter.address.rsplit(":", 1)[1])
        await publish(api_client, port)
        coordinator = CoordinatorUnderTest(
            coordinator_from_flags(
                tmp_path / "coord",
                *("--discover-namespace", NAMESPACE),
                *("--kubeconfig", str(kubesim.kubeconfig)),
            )
        )
        await coordinator.start()
        await coordinator.wait_serving("istio")
        await assert_found_and_installs(coordinator, adapter)
        await assert_not_ready_leaves_nothing_to_route_to(coordinator, api_client, port)
    finally:
        if coordinator is not None:
            await coordinator.stop()
        await adapter.stop()
