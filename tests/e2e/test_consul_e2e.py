"""The Consul adapter end to end: a subprocess driven over gRPC against kubesim.

Charts and sample apps are served over loopback HTTP: the real upstream `consul` chart (1.8.16,
1.9.11) and samples from ../shared/fixtures (skipped when absent), and our own toy chart and
mirror from tests/fixtures/consul (always run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.consul.declaration import DECLARATION
from adapters.kit.testing import EventCollector, managed_objects
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


@pytest.mark.timeout(90)
async def test_install_upgrade_samples_validate_uninstall(
    harness: MeshHarness, sources: Sources
) -> None:
    (older, consul_older), (newer, consul_newer) = sources.older, sources.newer
    if isinstance(harness.sim, RealCluster) and sources.charts.name == "hashicorp":
        pytest.skip(
            "known: on the real API server the upstream Consul upgrade 1.8.16 -> 1.9.11 does not "
            "finish within 240 s (install and uninstall do; see docs/realkube.md)"
        )
    client = await harness.start()
    events = EventCollector(client).start()
    try:
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
        pod_hook = next(w for w in injector["webhooks"] if w["name"].startswith("consul-connect"))
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

        await client.run(
            "install",
            operation_id=harness.next_id("upgrade"),
            mesh_version=newer,
            parameters={"server-replicas": "3"},
        )
        server = await harness.get("apps/v1", "StatefulSet", "consul-server", "consul")
        assert image_of(server).endswith(f":{consul_newer}")
        assert server is not None and server["spec"]["replicas"] == 3
        status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
        assert status.version == newer

        await client.run("inject-namespace", operation_id=harness.next_id("inject"))
        status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
        assert list(status.injection_namespaces) == ["default"]
        for sample in ("static-server", "static-client", "bookinfo", "httpbin"):
            await client.run(sample, operation_id=harness.next_id(sample))
        client_deployment = await harness.get("apps/v1", "Deployment", "static-client", "default")
        assert client_deployment is not None
        annotations = client_deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["consul.hashicorp.com/connect-service-upstreams"] == "static-server:1234"

        findings = await harness.validate(events)
        summaries = [e.summary for e in findings]
        summary = next(e for e in findings if e.component == "summary")
        assert "0 errors" in summary.summary, summaries
        assert "StatefulSet consul/consul-server is ready" in summaries
        assert "Deployment consul/consul-connect-injector is ready" in summaries
        assert "injection enabled in 1 namespaces: default" in summaries

        await client.run("inject-namespace", operation_id=harness.next_id("rm-inject"), delete=True)
        namespace = await harness.get("v1", "Namespace", "default")
        assert namespace is not None
        assert INJECT_LABEL not in (namespace["metadata"].get("labels") or {})
        for operation in ("httpbin", "bookinfo", "static-client", "static-server", "install"):
            removal = harness.next_id(f"rm-{operation}")
            await client.run(operation, operation_id=removal, delete=True)
        hooks = [e.summary for e in events.of(removal) if "hook" in e.summary]
        assert any("gateway-cleanup" in s and "completed" in s for s in hooks), hooks
        assert await managed_objects(harness.sim.kubeconfig) == []
        status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
        assert not status.installed
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
