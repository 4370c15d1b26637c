"""`ApplyOperationRequest.dry_run` end to end: the Istio adapter subprocess over gRPC on kubesim
with the toy charts. A dry run lists what would be created, changed or deleted and changes
nothing: no object, no namespace, no recorded operation, no event."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from adapters.kit.testing import AdapterClient, EventCollector
from coordinator.server.settings import StaticAdapter
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.e2e.coordinator_harness import CoordinatorUnderTest, coordinator_settings
from tests.e2e.mesh_harness import MeshHarness
from tests.e2e.toy_istio_stack import ServerFactory, applied_objects, toy_istio_adapter

TEMPLATE_ANNOTATIONS = "spec.template.metadata.annotations"

Change = tuple[str, str, str, str]
"""(action, kind, namespace, name)"""


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
async def harness(
    sim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> AsyncIterator[MeshHarness]:
    running = toy_istio_adapter(sim, tmp_path, static_http_server)
    try:
        yield running
    finally:
        await running.close()


async def dry_run(
    client: AdapterClient, operation: str, **fields: object
) -> pb.ApplyOperationResponse:
    request = pb.ApplyOperationRequest(operation=operation, dry_run=True, username="e2e", **fields)
    answer: pb.ApplyOperationResponse = await client.stub.ApplyOperation(request, timeout=60)
    return answer


def changes(answer: pb.ApplyOperationResponse) -> set[Change]:
    (cluster,) = answer.dry_run_result.clusters
    assert not cluster.HasField("error"), cluster.error
    assert cluster.changes_omitted == 0
    return {
        (
            pb.ObjectChangeAction.Name(c.action).removeprefix("OBJECT_CHANGE_ACTION_"),
            c.kind,
            c.namespace,
            c.name,
        )
        for c in cluster.changes
    }


async def assert_first_plan_creates_and_changes_nothing(
    client: AdapterClient, harness: MeshHarness, sim: RunningSim
) -> set[Change]:
    """Before any install: only creates, a resolved version, nothing in the cluster; the plan."""
    first = await dry_run(client, "install", parameters={"profile": "default"})
    assert first.operation_id == "" and not first.created
    assert first.operation.dry_run and first.operation.state == pb.OPERATION_STATE_SUCCEEDED
    assert first.operation.mesh_version == "1.1.0"  # resolved: the newest stable toy version
    planned = changes(first)
    assert {action for action, *_ in planned} == {"CREATE"}
    assert ("CREATE", "Namespace", "", "istio-system") in planned
    assert ("CREATE", "CustomResourceDefinition", "", "gateways.networking.istio.io") in planned
    assert await applied_objects(sim) == set()
    assert await harness.get("v1", "Namespace", "istio-system") is None
    (result,) = first.operation.cluster_results
    assert result.objects_applied == len(planned) and result.objects_unchanged == 0
    assert result.summary.startswith(f"dry run: {len(planned)} to create, 0 to change")
    return planned


async def install_as_planned(client: AdapterClient, sim: RunningSim, planned: set[Change]) -> None:
    """Every object the dry run listed is what the install made (its namespace came bare);
    a dry run after it plans nothing."""
    installed = await client.run(
        "install", operation_id="real-install", parameters={"profile": "default"}
    )
    assert installed.state == pb.OPERATION_STATE_SUCCEEDED
    assert {(kind, ns, name) for _, kind, ns, name in planned} == await applied_objects(sim) | {
        ("Namespace", "", "istio-system")
    }
    assert changes(await dry_run(client, "install", parameters={"profile": "default"})) == set()


async def upgrade_as_planned(client: AdapterClient, sim: RunningSim) -> None:
    """The demo profile's plan names the changed fields, and is what the upgrade then does."""
    before = await applied_objects(sim)
    upgrade = await dry_run(client, "install", parameters={"profile": "demo"})
    found = changes(upgrade)
    assert {
        (c.kind, c.name, tuple(c.changed_fields))
        for c in upgrade.dry_run_result.clusters[0].changes
        if c.action == pb.OBJECT_CHANGE_ACTION_UPDATE
    } == {
        ("ConfigMap", "istio", ("data.mesh",)),  # the demo profile's mesh config
        # the toy gateway chart stamps its profile on the pod template
        ("Deployment", "istio-ingressgateway", (f"{TEMPLATE_ANNOTATIONS}.meshplane.test/profile",)),
    }
    assert await applied_objects(sim) == before
    await client.run("install", operation_id="real-demo", parameters={"profile": "demo"})
    created = await applied_objects(sim) - before
    assert created, "the demo profile adds the egress gateway"
    assert found == {
        ("UPDATE", "ConfigMap", "istio-system", "istio"),
        ("UPDATE", "Deployment", "istio-system", "istio-ingressgateway"),
    } | {("CREATE", kind, ns, name) for kind, ns, name in created}
    assert changes(await dry_run(client, "install", parameters={"profile": "demo"})) == set()


async def assert_uninstall_plans_delete_all_but_crds(
    client: AdapterClient, sim: RunningSim
) -> None:
    """An uninstall plans deleting all but the CRDs, a purge everything; both change nothing."""
    everything = await applied_objects(sim)
    crds = {o for o in everything if o[0] == "CustomResourceDefinition"}
    assert crds
    uninstall = await dry_run(client, "install", delete=True)  # keeps the CRDs
    assert {(kind, ns, name) for action, kind, ns, name in changes(uninstall)} == everything - crds
    assert {action for action, *_ in changes(uninstall)} == {"DELETE"}
    purge = await dry_run(client, "install", delete=True, parameters={"purge-crds": "true"})
    assert {(kind, ns, name) for action, kind, ns, name in changes(purge)} == everything
    assert await applied_objects(sim) == everything


async def assert_events_only_of_real_operations(client: AdapterClient) -> None:
    events = EventCollector(client).start()
    try:
        recorded = await events.settled("real-demo")
    finally:
        await events.stop()
    operations = {event.operation_id for event in events.events}
    assert operations <= {"real-install", "real-demo", ""}, operations
    assert recorded[-1].operation_state == pb.OPERATION_STATE_SUCCEEDED


async def test_dry_runs_of_install_upgrade_and_uninstall_change_nothing(
    harness: MeshHarness, sim: RunningSim
) -> None:
    client = await harness.start()
    planned = await assert_first_plan_creates_and_changes_nothing(client, harness, sim)
    await install_as_planned(client, sim, planned)
    await upgrade_as_planned(client, sim)
    await assert_uninstall_plans_delete_all_but_crds(client, sim)
    await assert_events_only_of_real_operations(client)


async def test_a_dry_run_is_refused_as_the_real_request_would_be(harness: MeshHarness) -> None:
    client = await harness.start()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await dry_run(client, "install", parameters={"profile": "huge"})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parameters.profile" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await dry_run(client, "nope")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    # A namespace the operation may not create: the dry run says so, as the apply would.
    answer = await dry_run(client, "label-namespace", namespace="nope")
    (cluster,) = answer.dry_run_result.clusters
    assert cluster.error.code == "FAILED_PRECONDITION"
    assert cluster.error.message.startswith("namespace 'nope' does not exist; pass ")
    asked = await dry_run(
        client, "label-namespace", namespace="nope", parameters={"create-namespace": "true"}
    )
    assert ("CREATE", "Namespace", "", "nope") in changes(asked)
    assert await harness.get("v1", "Namespace", "nope") is None
    # Objects in namespaces the operation creates are listed as created, unchecked.
    body = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: other}\ndata: {a: '1'}\n"
    )
    custom = await dry_run(
        client,
        "custom",
        custom_body=body,
        parameters={"create-namespace": "true"},
    )
    notes = {c.name: c.message for c in custom.dry_run_result.clusters[0].changes}
    assert changes(custom) == {
        ("CREATE", "Namespace", "", "other"),
        ("CREATE", "ConfigMap", "other", "one"),
    }
    assert notes["other"] == "asked for (create-namespace)"
    assert notes["one"].startswith("not checked by the API server: namespace other")
    assert await harness.get("v1", "Namespace", "other") is None


async def test_a_dry_run_never_records_its_operation_id(harness: MeshHarness) -> None:
    client = await harness.start()
    answer = await dry_run(client, "httpbin", operation_id="looks-real")
    assert answer.operation_id == "" and answer.operation.operation_id == ""
    assert {kind for _, kind, _, _ in changes(answer)} >= {"Deployment", "Service"}
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.stub.GetOperation(pb.GetOperationRequest(operation_id="looks-real"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    # The id is free for the real operation, which then runs.
    done = await client.run("httpbin", operation_id="looks-real")
    assert done.state == pb.OPERATION_STATE_SUCCEEDED


async def test_dry_runs_through_the_coordinator_are_never_recorded(
    harness: MeshHarness, tmp_path: Path
) -> None:
    client = await harness.start()
    assert harness.process is not None
    settings = dataclasses.replace(
        coordinator_settings(tmp_path / "coord", []),
        adapters=(StaticAdapter(mesh="istio", address=harness.process.address),),
        # Shorter than rendering the install's charts: a dry run (service and pass-through)
        # has the caller's deadline instead.
        call_timeout_seconds=0.05,
    )
    coordinator = CoordinatorUnderTest(settings)
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        install = await coordinator.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="istio", request=pb.ApplyOperationRequest(operation="install", dry_run=True)
            ),
            timeout=60,
        )
        assert install.dry_run_result.clusters[0].changes
        request = pb.ApplyOperationRequest(operation="httpbin", dry_run=True)
        routed = await coordinator.apply("istio", request)
        assert routed.operation_id == "" and routed.operation.operation.dry_run
        (cluster,) = routed.dry_run_result.clusters
        assert ("Deployment", "httpbin-v1") in {(c.kind, c.name) for c in cluster.changes}
        # The pass-through (an adapter call with the mesh named) relays the same answer.
        adapter = pb_grpc.MeshAdapterServiceStub(coordinator.channel)
        passed = await adapter.ApplyOperation(
            request, metadata=(("x-meshplane-mesh", "istio"),), timeout=30
        )
        assert changes(passed) == changes(routed_as_adapter_answer(routed))
        history = await coordinator.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(), timeout=5
        )
        assert list(history.operations) == []
        assert await applied_objects(harness.sim) == set()  # type: ignore[arg-type]
    finally:
        await coordinator.stop()
        await client.close()


def routed_as_adapter_answer(routed: cpb.ApplyOperationResponse) -> pb.ApplyOperationResponse:
    return pb.ApplyOperationResponse(
        operation=routed.operation.operation, dry_run_result=routed.dry_run_result
    )
