"""The Consul adapter end to end: a subprocess driven over gRPC against kubesim (and, with the
`realkube` parameter, against the real API server).

Charts and sample apps are served over loopback HTTP: the real upstream `consul` chart (1.8.16,
1.9.11) and samples from ../shared/fixtures (skipped when absent), and our own toy chart and
mirror from tests/fixtures/consul (always run).

On the real server two things kubesim does not do shape the flow: the scheduler enforces the
chart's one-server-per-Node anti-affinity (the test cluster has two Nodes, so an upgrade to three
servers fails naming the unschedulable Pod, then one to two servers succeeds), and admission is
real (the connect injector has no backend, so a sample in an injected namespace fails naming the
webhook; the samples then run without the label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from adapters.consul.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.testing import AdapterClient, EventCollector, managed_objects
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.adapters.toy_repository import package_toy_repository, toy_mirror
from tests.e2e.mesh_harness import (
    MeshHarness,
    Sources,
    harness_fixtures,
    round_trip_every_operation,
)
from tests.fixtures_paths import shared_fixtures
from tests.plugins.realkube import RealCluster

INJECT_LABEL = "consul.hashicorp.com/connect-inject"


def shared_sources() -> Sources:
    fixtures = shared_fixtures()
    return Sources(
        charts=fixtures / "charts" / "hashicorp",
        mirror=fixtures,
        older=("1.8.16", "1.21.5"),
        newer=("1.9.11", "1.22.7"),
    )


def toy_sources(tmp_path: Path) -> Sources:
    older, newer = ("1.0.0", "1.20.0"), ("1.1.0", "1.21.0")
    return Sources(
        charts=package_toy_repository("consul", tmp_path / "charts", dict([older, newer])),
        mirror=toy_mirror("consul"),
        older=older,
        newer=newer,
    )


sim, sources, harness = harness_fixtures("consul", shared_sources, toy_sources)


def image_of(workload: dict[str, object] | None) -> str:
    assert workload is not None
    return str(workload["spec"]["template"]["spec"]["containers"][0]["image"])  # type: ignore[index]


def one_server_per_node(server: dict[str, Any] | None) -> bool:
    """Whether the StatefulSet's Pods require distinct Nodes (the chart's default affinity)."""
    assert server is not None
    affinity = server["spec"]["template"]["spec"].get("affinity") or {}
    terms = (affinity.get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or []
    return any(term.get("topologyKey") == "kubernetes.io/hostname" for term in terms)


async def node_count(harness: MeshHarness) -> int:
    async with await ClusterSession.connect(kubeconfig_path=harness.sim.kubeconfig) as session:
        return len(await session.list("v1", "Node"))


async def install_within(
    harness: MeshHarness, version: str, *, replicas: int, seconds: int
) -> pb.Operation:
    """Install (or upgrade) with an operation timeout of ``seconds``; it must fail."""
    assert harness.client is not None
    operation_id = harness.next_id("install-within")
    request = pb.ApplyOperationRequest(
        operation_id=operation_id,
        operation="install",
        mesh_version=version,
        parameters={"server-replicas": str(replicas)},
        username="e2e",
        timeout=Duration(seconds=seconds),
    )
    await harness.client.stub.ApplyOperation(request, timeout=10)
    done = await harness.client.wait(operation_id, within=seconds + 60)
    assert done.state == pb.OPERATION_STATE_FAILED, done
    return done


async def upgrade_fails_unschedulable(
    harness: MeshHarness, version: str, *, replicas: int, nodes: int
) -> None:
    """More servers than Nodes: the upgrade fails within its timeout, naming the StatefulSet
    and the scheduler's verdict on the Pod that has no Node (not a bare OPERATION_TIMEOUT)."""
    done = await install_within(harness, version, replicas=replicas, seconds=60)
    assert done.error.code == "WORKLOAD_NOT_READY", done.error
    message = done.error.message
    assert message.startswith("StatefulSet consul/consul-server is not ready after"), message
    assert "Unschedulable (pod consul-server-" in message, message  # the one without a Node
    assert f"0/{nodes} nodes are available" in message, message
    assert "didn't match pod anti-affinity rules" in message, message


SAMPLES = ("static-server", "static-client", "bookinfo", "httpbin")


async def run_samples(harness: MeshHarness) -> None:
    """Apply every sample; static-client names its upstream."""
    assert harness.client is not None
    for sample in SAMPLES:
        await harness.client.run(sample, operation_id=harness.next_id(sample))
    client_deployment = await harness.get("apps/v1", "Deployment", "static-client", "default")
    assert client_deployment is not None
    annotations = client_deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["consul.hashicorp.com/connect-service-upstreams"] == "static-server:1234"


async def sample_fails_without_the_injector(harness: MeshHarness) -> None:
    """A sample in the injected namespace fails, naming the webhook that cannot be called."""
    assert harness.client is not None
    operation_id = harness.next_id("static-server-injected")
    await harness.client.apply("static-server", operation_id=operation_id)
    done = await harness.client.wait(operation_id)
    assert done.state == pb.OPERATION_STATE_FAILED
    assert done.error.code == "WORKLOAD_FAILED", done.error
    message = done.error.message
    assert message.startswith("Deployment default/static-server is not ready: FailedCreate"), (
        message
    )
    assert 'failed calling webhook "consul-connect-injector.consul.hashicorp.com"' in message
    await harness.client.run(
        "static-server", operation_id=harness.next_id("rm-static-server-injected"), delete=True
    )


async def assert_valid(harness: MeshHarness, events: EventCollector) -> None:
    findings = await harness.validate(events)
    summaries = [e.summary for e in findings]
    summary = next(e for e in findings if e.component == "summary")
    assert "0 errors" in summary.summary, summaries
    assert "StatefulSet consul/consul-server is ready" in summaries
    assert "Deployment consul/consul-connect-injector is ready" in summaries
    assert "injection enabled in 1 namespaces: default" in summaries


async def remove_injection(harness: MeshHarness) -> None:
    assert harness.client is not None
    await harness.client.run(
        "inject-namespace", operation_id=harness.next_id("rm-inject"), delete=True
    )
    namespace = await harness.get("v1", "Namespace", "default")
    assert namespace is not None
    assert INJECT_LABEL not in (namespace["metadata"].get("labels") or {})


async def install_one_server(
    harness: MeshHarness, client: AdapterClient, events: EventCollector, sources: Sources
) -> dict[str, Any]:
    """Install the older version with one server; the injector's pod webhook, as installed."""
    (older, consul_older) = sources.older
    install = harness.next_id("install")
    await client.run(
        "install",
        operation_id=install,
        mesh_version=older,
        parameters={"server-replicas": "1"},
    )
    server = await harness.get("apps/v1", "StatefulSet", "consul-server", "consul")
    assert image_of(server).endswith(f":{consul_older}")  # the requested version, honoured
    assert server is not None and server["status"]["readyReplicas"] == 1
    owned = await managed_objects(harness.sim.kubeconfig)
    kinds = {kind for kind, _, _ in owned}
    assert "Pod" not in kinds  # the chart's `helm test` Pod is not installed
    injector = await harness.get(
        "admissionregistration.k8s.io/v1",
        "MutatingWebhookConfiguration",
        "consul-connect-injector",
    )
    assert injector is not None
    pod_hook: dict[str, Any] = next(
        w for w in injector["webhooks"] if w["name"].startswith("consul-connect")
    )
    assert pod_hook["namespaceSelector"] == {"matchLabels": {INJECT_LABEL: "true"}}
    hooks = [e.summary for e in events.of(install) if "hook" in e.summary]
    assert any("gateway-resources" in s and "completed" in s for s in hooks), hooks
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert (status.installed, status.version) == (True, older)
    again = await client.run(
        "install",
        operation_id=harness.next_id("reinstall"),
        mesh_version=older,
        parameters={"server-replicas": "1"},
    )
    assert again.cluster_results[0].objects_applied == 0
    assert await managed_objects(harness.sim.kubeconfig) == owned
    return pod_hook


async def upgrade_to_three_servers(
    harness: MeshHarness, client: AdapterClient, sources: Sources
) -> None:
    """Upgrade to 3 servers, or on the real scheduler to as many as there are Nodes."""
    (newer, consul_newer) = sources.newer
    server = await harness.get("apps/v1", "StatefulSet", "consul-server", "consul")
    replicas = 3
    nodes = await node_count(harness)
    if isinstance(harness.sim, RealCluster) and one_server_per_node(server) and nodes < 3:
        # The real scheduler enforces the chart's anti-affinity: the third server has no
        # Node. The upgrade fails with that cause before its deadline, then succeeds with
        # as many servers as Nodes.
        await upgrade_fails_unschedulable(harness, newer, replicas=3, nodes=nodes)
        replicas = nodes
    await client.run(
        "install",
        operation_id=harness.next_id("upgrade"),
        mesh_version=newer,
        parameters={"server-replicas": str(replicas)},
    )
    server = await harness.get("apps/v1", "StatefulSet", "consul-server", "consul")
    assert image_of(server).endswith(f":{consul_newer}")
    assert server is not None and server["spec"]["replicas"] == replicas
    assert server["status"]["readyReplicas"] == replicas
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert status.version == newer


async def inject_run_samples_and_validate(
    harness: MeshHarness, client: AdapterClient, events: EventCollector, pod_hook: dict[str, Any]
) -> None:
    await client.run("inject-namespace", operation_id=harness.next_id("inject"))
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert list(status.injection_namespaces) == ["default"]
    if isinstance(harness.sim, RealCluster) and pod_hook.get("failurePolicy") == "Fail":
        # Real admission: the injector has no backend here, so no Pod of an injected
        # namespace can be created. A sample there fails with that cause; without the
        # label the samples run.
        await sample_fails_without_the_injector(harness)
        await assert_valid(harness, events)
        await remove_injection(harness)
        await run_samples(harness)
    else:
        await run_samples(harness)
        await assert_valid(harness, events)
        await remove_injection(harness)


async def uninstall_runs_the_cleanup_hook_and_leaves_nothing(
    harness: MeshHarness, client: AdapterClient, events: EventCollector
) -> None:
    for operation in ("httpbin", "bookinfo", "static-client", "static-server", "install"):
        removal = harness.next_id(f"rm-{operation}")
        await client.run(
            operation, operation_id=removal, delete=True, parameters={"purge-crds": "true"}
        )
    hooks = [e.summary for e in events.of(removal) if "hook" in e.summary]
    assert any("gateway-cleanup" in s and "completed" in s for s in hooks), hooks
    assert await managed_objects(harness.sim.kubeconfig) == []
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert not status.installed


@pytest.mark.timeout(90)
async def test_install_upgrade_samples_validate_uninstall(
    harness: MeshHarness, sources: Sources
) -> None:
    client = await harness.start()
    events = EventCollector(client).start()
    try:
        pod_hook = await install_one_server(harness, client, events, sources)
        await upgrade_to_three_servers(harness, client, sources)
        await inject_run_samples_and_validate(harness, client, events, pod_hook)
        await uninstall_runs_the_cleanup_hook_and_leaves_nothing(harness, client, events)
    finally:
        await events.stop()


@pytest.mark.timeout(90)
async def test_every_advertised_operation_applies_and_deletes_cleanly(
    harness: MeshHarness, sources: Sources
) -> None:
    await harness.start()
    exercised = await round_trip_every_operation(
        harness, DECLARATION, mesh_version=sources.older[0]
    )
    assert exercised == [
        "static-server",
        "static-client",
        "bookinfo",
        "httpbin",
        "inject-namespace",
        "custom",
    ]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sim", [300.0], indirect=True)
async def test_a_workload_that_never_gets_ready_fails_with_its_cause_before_the_deadline(
    harness: MeshHarness, sources: Sources
) -> None:
    # kubesim makes workloads ready only after 300 s; the operation may take 8 s. Waiting
    # ends before the operation's deadline, so the failure names what was not ready and why
    # instead of a bare OPERATION_TIMEOUT.
    await harness.start()
    done = await install_within(harness, sources.older[0], replicas=1, seconds=8)
    assert done.error.code in {"WORKLOAD_NOT_READY", "HOOK_FAILED"}, done.error
    assert " is not ready after " in done.error.message, done.error
