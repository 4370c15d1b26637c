"""Istio against the real API server, where admission is real and no webhook has a backend.

In the loopback-only namespace every call the API server makes to istiod's webhooks fails
("network is unreachable"). The adapter must then say so: a sample app whose Pods the sidecar
injector (failurePolicy Fail) blocks fails with the ReplicaSet's FailedCreate message within the
stuck grace, not after the whole timeout and never as a success. The config validators fail
closed (the adapter sets `validationFailurePolicy: Fail`, before and after an upgrade, so it
never fights istiod's webhook controller over the field), so Istio config is refused naming the
webhook (WEBHOOK_UNAVAILABLE). Install, re-install, upgrade and uninstall still work, and the
uninstall leaves nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.objects import ObjectRef
from adapters.kit.testing import AdapterClient, EventCollector, managed_objects
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.e2e.mesh_harness import MeshHarness
from tests.fixtures_paths import shared_fixtures
from tests.plugins.realkube import RealCluster
from tests.plugins.static_http import StaticHttpServer

pytestmark = pytest.mark.realkube

OLDER, NEWER = "1.29.6", "1.30.3"
MINIMAL = {"profile": "minimal"}
INJECTED = "injected"


@pytest.fixture
async def istio(
    real_cluster: RealCluster,
    tmp_path: Path,
    static_http_server: Callable[[Path], StaticHttpServer],
) -> AsyncIterator[MeshHarness]:
    fixtures = shared_fixtures()
    harness = MeshHarness(
        "istio",
        real_cluster,
        tmp_path,
        charts=static_http_server(fixtures / "charts" / "istio"),
        manifests=static_http_server(fixtures),
    )
    try:
        yield harness
    finally:
        await harness.close()


async def failed(harness: MeshHarness, operation: str, **kwargs: object) -> pb.Operation:
    """Run ``operation``; it must fail (it returns the failed operation)."""
    assert harness.client is not None
    operation_id = harness.next_id(operation)
    await harness.client.apply(operation, operation_id=operation_id, **kwargs)  # type: ignore[arg-type]
    done = await harness.client.wait(operation_id, within=240)
    assert done.state == pb.OPERATION_STATE_FAILED, (operation, done.state, done.error)
    return done


async def install_and_reinstall(istio: MeshHarness, client: AdapterClient) -> None:
    """The minimal profile installs with istiod ready; a re-install changes nothing."""
    kubeconfig = istio.sim.kubeconfig
    done = await client.run(
        "install", operation_id=istio.next_id("install"), mesh_version=OLDER, parameters=MINIMAL
    )
    assert done.cluster_results[0].objects_applied > 0
    istiod = await istio.get("apps/v1", "Deployment", "istiod", "istio-system")
    assert istiod is not None and istiod["status"]["readyReplicas"] >= 1
    owned = await managed_objects(kubeconfig)
    again = await client.run(
        "install",
        operation_id=istio.next_id("reinstall"),
        mesh_version=OLDER,
        parameters=MINIMAL,
    )
    assert again.cluster_results[0].objects_applied == 0
    assert await managed_objects(kubeconfig) == owned


async def assert_validator_refuses_bookinfo(istio: MeshHarness) -> None:
    """The validator fails closed (the adapter sets it so; the charts would flip-flop) and
    istiod cannot be reached: Bookinfo's Gateway is refused, naming the webhook."""
    refused = await failed(istio, "bookinfo", namespace="default")
    assert refused.error.code == "WEBHOOK_UNAVAILABLE", refused.error
    assert '"validation.istio.io"' in refused.error.message
    assert "default/bookinfo" in refused.error.message  # its Gateway or VirtualService


async def assert_injector_blocks_httpbin(
    istio: MeshHarness, client: AdapterClient, events: EventCollector
) -> None:
    """The injector (failurePolicy Fail) cannot be called: httpbin's Pods cannot be created."""
    await client.run("label-namespace", operation_id=istio.next_id("label"), namespace=INJECTED)
    blocked = await failed(istio, "httpbin", namespace=INJECTED)
    assert blocked.error.code == "WORKLOAD_FAILED", blocked.error
    assert "FailedCreate" in blocked.error.message
    assert "sidecar-injector.istio.io" in blocked.error.message
    assert "webhook" in blocked.error.suggested_remediation
    stuck = [e for e in events.of(blocked.operation_id) if "FailedCreate" in e.summary]
    assert stuck, [e.summary for e in events.of(blocked.operation_id)]


async def upgrade_keeps_the_validator_closed(istio: MeshHarness, client: AdapterClient) -> None:
    """An upgrade succeeds and keeps the policy; config operations fail with the same cause."""
    await client.run(
        "install", operation_id=istio.next_id("upgrade"), mesh_version=NEWER, parameters=MINIMAL
    )
    validator = await istio.get(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        "istiod-default-validator",
    )
    assert validator is not None
    assert [w["failurePolicy"] for w in validator["webhooks"]] == ["Fail"]
    refused = await failed(istio, "bookinfo-route-v1", namespace="default")
    assert refused.error.code == "WEBHOOK_UNAVAILABLE", refused.error
    assert '"validation.istio.io"' in refused.error.message


async def uninstall_leaves_nothing(istio: MeshHarness, client: AdapterClient) -> None:
    for operation, namespace in (
        ("bookinfo-route-v1", "default"),  # refused, but its release record is kept
        ("httpbin", INJECTED),
        ("label-namespace", INJECTED),
        ("bookinfo", "default"),
        ("install", ""),
    ):
        await client.run(
            operation,
            operation_id=istio.next_id(f"rm-{operation}"),
            namespace=namespace,
            delete=True,
            parameters={"purge-crds": "true"} if operation == "install" else {},
        )
    assert await managed_objects(istio.sim.kubeconfig) == []
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert not status.installed


@pytest.mark.timeout(900)
async def test_istio_with_real_admission_fails_with_the_webhook_as_the_cause(
    istio: MeshHarness,
) -> None:
    client = await istio.start()
    events = EventCollector(client).start()
    kubeconfig = istio.sim.kubeconfig
    async with await ClusterSession.connect(kubeconfig_path=kubeconfig) as session:
        await session.apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INJECTED}}
        )
    try:
        await install_and_reinstall(istio, client)
        await assert_validator_refuses_bookinfo(istio)
        await assert_injector_blocks_httpbin(istio, client, events)
        await upgrade_keeps_the_validator_closed(istio, client)
        await client.run("validate", operation_id=istio.next_id("validate"))
        await uninstall_leaves_nothing(istio, client)
    finally:
        await events.stop()
        async with await ClusterSession.connect(kubeconfig_path=kubeconfig) as session:
            namespace = await session.get("v1", "Namespace", INJECTED)
            if namespace is not None:
                await session.delete(ObjectRef.from_manifest(namespace))
