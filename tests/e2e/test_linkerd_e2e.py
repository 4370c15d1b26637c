"""The Linkerd adapter end to end: a subprocess driven over gRPC against kubesim.

Charts and sample apps are served over loopback HTTP: the real upstream charts
(`linkerd-crds`, `linkerd-control-plane`) and samples from ../shared/fixtures (skipped when
absent), and our own toy charts and mirror from tests/fixtures/linkerd (always run).
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.declare.certificates import chain_problem, generate_trust_chain
from adapters.kit.testing import AdapterClient, EventCollector, managed_objects
from adapters.linkerd.declaration import DECLARATION
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.adapters.toy_repository import package_toy_repository, toy_mirror
from tests.e2e.mesh_harness import (
    MeshHarness,
    Sources,
    harness_fixtures,
    round_trip_every_operation,
)
from tests.fixtures_paths import shared_fixtures

DEPLOYMENTS = ["linkerd-destination", "linkerd-identity", "linkerd-proxy-injector"]


def shared_sources() -> Sources:
    fixtures = shared_fixtures()
    return Sources(
        charts=fixtures / "charts" / "linkerd",
        mirror=fixtures,
        older=("2026.7.2", "edge-26.7.2"),
        newer=("2026.8.3", "edge-26.8.3"),
        crds=10,
    )


def toy_sources(tmp_path: Path) -> Sources:
    older, newer = ("1.0.0", "edge-1.0.0"), ("1.1.0", "edge-1.1.0")
    return Sources(
        charts=package_toy_repository("linkerd", tmp_path / "charts", dict([older, newer])),
        mirror=toy_mirror("linkerd"),
        older=older,
        newer=newer,
        crds=2,
    )


sim, sources, harness = harness_fixtures("linkerd", shared_sources, toy_sources)


async def trust_anchor(harness: MeshHarness) -> str:
    roots = await harness.get("v1", "ConfigMap", "linkerd-identity-trust-roots", "linkerd")
    assert roots is not None
    return str(roots["data"]["ca-bundle.crt"])


async def stored_secret(harness: MeshHarness) -> dict[str, str]:
    secret = await harness.get("v1", "Secret", "meshplane-linkerd-identity", "linkerd")
    assert secret is not None
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def install_and_check_identity(
    harness: MeshHarness, client: AdapterClient, sources: Sources
) -> dict[str, str]:
    """Install the older version; the identity secret holds the published trust anchor."""
    versions = await client.stub.ListMeshVersions(pb.ListMeshVersionsRequest())
    listed = {(v.version, v.app_version) for v in versions.versions}
    assert listed == {sources.older, sources.newer}

    older = sources.older[0]
    await client.run("install", operation_id=harness.next_id("install"), mesh_version=older)
    owned = await managed_objects(harness.sim.kubeconfig)
    crds = [n for kind, _, n in owned if kind == "CustomResourceDefinition"]
    assert len(crds) == sources.crds
    assert sorted(n for kind, _, n in owned if kind == "Deployment") == DEPLOYMENTS
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert (status.installed, status.version) == (True, older)
    assert status.components and all(c.ready for c in status.components)

    anchor = await trust_anchor(harness)
    stored = await stored_secret(harness)
    assert stored["ca.crt"].strip() == anchor.strip()
    root = x509.load_pem_x509_certificate(anchor.encode())
    assert root.subject.rfc4514_string() == "CN=root.linkerd.cluster.local"
    return stored


async def reinstall_and_upgrade_keep_identity(
    harness: MeshHarness, client: AdapterClient, sources: Sources, stored: dict[str, str]
) -> None:
    """A re-install applies nothing; an upgrade keeps the anchor, issuer and webhook secrets."""
    anchor = await trust_anchor(harness)
    owned = await managed_objects(harness.sim.kubeconfig)
    webhooks = await harness.get("v1", "Secret", "meshplane-linkerd-webhooks", "linkerd")
    again = await client.run(
        "install", operation_id=harness.next_id("reinstall"), mesh_version=sources.older[0]
    )
    assert again.cluster_results[0].objects_applied == 0
    assert await managed_objects(harness.sim.kubeconfig) == owned
    newer = sources.newer[0]
    await client.run("install", operation_id=harness.next_id("upgrade"), mesh_version=newer)
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert status.version == newer
    assert await trust_anchor(harness) == anchor
    assert await stored_secret(harness) == stored
    upgraded = await harness.get("v1", "Secret", "meshplane-linkerd-webhooks", "linkerd")
    assert webhooks is not None and upgraded is not None
    assert upgraded["data"] == webhooks["data"]
    issuer = await harness.get("v1", "Secret", "linkerd-identity-issuer", "linkerd")
    assert issuer is not None
    assert base64.b64decode(issuer["data"]["crt.pem"]).decode().strip() == (
        stored["issuer.crt"].strip()
    )


async def deploy_samples_and_inject(harness: MeshHarness, client: AdapterClient) -> None:
    await client.run("emojivoto", operation_id=harness.next_id("emojivoto"))
    assert await harness.get("apps/v1", "Deployment", "web", "emojivoto") is not None
    await client.run(
        "inject-namespace", operation_id=harness.next_id("inject"), namespace="emojivoto"
    )
    namespace = await harness.get("v1", "Namespace", "emojivoto")
    assert namespace is not None
    assert namespace["metadata"]["annotations"]["linkerd.io/inject"] == "enabled"
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert list(status.injection_namespaces) == ["emojivoto"]
    await client.run(
        "booksapp",
        operation_id=harness.next_id("booksapp"),
        parameters={"create-namespace": "true"},  # booksapp's manifest has no Namespace
    )
    await client.run("httpbin", operation_id=harness.next_id("httpbin"))


async def validate_passes(harness: MeshHarness, events: EventCollector, sources: Sources) -> None:
    findings = await harness.validate(events)
    summaries = [e.summary for e in findings]
    summary = next(e for e in findings if e.component == "summary")
    assert "0 errors" in summary.summary, summaries
    assert f"{sources.crds} Linkerd CRDs established" in summaries
    assert "Deployment linkerd/linkerd-identity is ready" in summaries
    assert "the issuer certificate chains to the trust anchor" in summaries
    assert "the published trust anchor is the stored one (installs keep it)" in summaries
    assert "injection enabled in 1 namespaces: emojivoto" in summaries
    # kubesim runs no injector: the emojivoto pods are reported as outside the mesh.
    assert any("run without the linkerd-proxy sidecar" in s for s in summaries)


async def validate_fails_on_a_foreign_anchor(
    harness: MeshHarness, client: AdapterClient, events: EventCollector
) -> None:
    """An issuer that does not chain to the published anchor fails validate, naming why."""
    foreign = generate_trust_chain(anchor_name="root.linkerd.cluster.local", issuer_name="x")
    async with await ClusterSession.connect(kubeconfig_path=harness.sim.kubeconfig) as session:
        roots = await session.get("v1", "ConfigMap", "linkerd-identity-trust-roots", "linkerd")
        assert roots is not None
        roots["data"]["ca-bundle.crt"] = foreign.anchor.certificate_pem
        del roots["metadata"]["managedFields"]  # an applied configuration carries none
        await session.apply(roots, field_manager="e2e-tamper")
    tampered = harness.next_id("validate-tampered")
    await client.apply("validate", operation_id=tampered)
    failed = await client.wait(tampered)
    assert failed.state == pb.OPERATION_STATE_FAILED
    assert failed.error.code == "VALIDATION_FAILED"
    await events.wait_for(lambda e: e.operation_id == tampered and e.component == "summary")
    errors = [e.summary for e in events.of(tampered) if e.severity == pb.EVENT_SEVERITY_ERROR]
    assert "the issuer certificate does not chain to the trust anchor" in errors
    warnings = [e.summary for e in events.of(tampered) if e.severity == pb.EVENT_SEVERITY_WARNING]
    assert any("the published trust anchor is not the stored one" in w for w in warnings)


async def uninstall_leaves_nothing(harness: MeshHarness, client: AdapterClient) -> None:
    await client.run(
        "inject-namespace",
        operation_id=harness.next_id("rm-inject"),
        namespace="emojivoto",
        delete=True,
    )
    namespace = await harness.get("v1", "Namespace", "emojivoto")
    assert namespace is not None
    assert "linkerd.io/inject" not in (namespace["metadata"].get("annotations") or {})
    for operation in ("httpbin", "booksapp", "emojivoto", "install"):
        await client.run(
            operation,
            operation_id=harness.next_id(f"rm-{operation}"),
            delete=True,
            parameters={"purge-crds": "true"},
        )
    assert await managed_objects(harness.sim.kubeconfig) == []
    assert await harness.get("v1", "Namespace", "emojivoto") is None
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert not status.installed


@pytest.mark.timeout(90)
async def test_install_upgrade_samples_validate_uninstall(
    harness: MeshHarness, sources: Sources
) -> None:
    client = await harness.start()
    events = EventCollector(client).start()
    try:
        stored = await install_and_check_identity(harness, client, sources)
        await reinstall_and_upgrade_keep_identity(harness, client, sources, stored)
        await deploy_samples_and_inject(harness, client)
        await validate_passes(harness, events, sources)
        await validate_fails_on_a_foreign_anchor(harness, client, events)
        await uninstall_leaves_nothing(harness, client)
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
    assert exercised == ["emojivoto", "booksapp", "httpbin", "inject-namespace", "custom"]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sim", [1.0], indirect=True)
async def test_killed_mid_install_resumes_with_one_consistent_trust_chain(
    harness: MeshHarness, sources: Sources
) -> None:
    client = await harness.start()
    events = EventCollector(client).start()
    operation_id = "e2e-install-interrupted"
    await client.apply("install", operation_id=operation_id, mesh_version=sources.newer[0])
    await events.wait_for(
        lambda e: (
            e.operation_id == operation_id
            and e.component == "Secret linkerd/meshplane-linkerd-identity"
        )
    )
    assert harness.process is not None
    harness.process.kill()
    await events.stop()
    await client.close()
    harness.client = None

    client = await harness.start()
    interrupted = await client.stub.GetOperation(pb.GetOperationRequest(operation_id=operation_id))
    assert interrupted.operation.state == pb.OPERATION_STATE_INTERRUPTED
    await client.apply("install", operation_id=operation_id, mesh_version=sources.newer[0])
    done = await client.wait(operation_id)
    assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
    assert done.attempt == 2
    stored = await stored_secret(harness)
    assert stored["ca.crt"].strip() == (await trust_anchor(harness)).strip()
    issuer = await harness.get("v1", "Secret", "linkerd-identity-issuer", "linkerd")
    assert issuer is not None
    issuer_pem = base64.b64decode(issuer["data"]["crt.pem"]).decode()
    assert issuer_pem.strip() == stored["issuer.crt"].strip()
    assert chain_problem(stored["ca.crt"], issuer_pem) is None
