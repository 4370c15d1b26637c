"""`meshes.MeshService` (Meshery's adapter contract) through real gRPC on 127.0.0.1:0, with
stubs generated from our compat proto, on the toy adapter with a scripted executor."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.grpc.meshery_servicer import MESHERY_SERVICE_NAME
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.meshery import meshops_pb2 as meshes
from meshplane.meshery import meshops_pb2_grpc as meshes_grpc
from tests.kit.test_servicer import ACCEPTING, kubeconfig_text
from tests.kit.toy_adapter import (
    TERMINAL,
    Harness,
    Script,
    ScriptedExecutor,
    ToyVersions,
    eventually,
    status_code,
    toy_adapter,
)

StatusCode = grpc.StatusCode


def meshery(h: Harness) -> meshes_grpc.MeshServiceStub:
    """A Meshery-side stub on the harness's channel (the adapter's one port)."""
    return meshes_grpc.MeshServiceStub(h.channel)


def apply_rule(op_name: str, **fields: Any) -> meshes.ApplyRuleRequest:
    """What Meshery's server sends: a fresh UUID unless the test gives an id."""
    fields.setdefault("operation_id", str(uuid.uuid4()))
    return meshes.ApplyRuleRequest(opName=op_name, **fields)


async def refusal(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


async def read_until(
    call: Any, summary: str, operation_id: str, within: float = 10
) -> list[meshes.EventsResponse]:
    """Events from a Meshery StreamEvents call up to the one with ``summary`` for the op."""
    events: list[meshes.EventsResponse] = []
    async with asyncio.timeout(within):
        while (event := await call.read()) is not grpc.aio.EOF:
            events.append(event)
            if event.operation_id == operation_id and event.summary == summary:
                return events
    raise AssertionError(f"stream ended before {summary!r}: {events}")


async def test_meshery_registration_sequence_and_health() -> None:
    async with toy_adapter() as h:
        stub = meshery(h)
        supported = await stub.SupportedOperations(meshes.SupportedOperationsRequest())
        assert supported.error == ""
        assert [(op.key, op.category) for op in supported.ops] == [
            ("install", meshes.INSTALL),
            ("sample", meshes.SAMPLE_APPLICATION),
            ("policy", meshes.CONFIGURE),
            ("custom", meshes.CUSTOM),
        ]
        assert supported.ops[0].value == "Install the toy control plane"

        info = await stub.ComponentInfo(meshes.ComponentInfoRequest())
        native = await h.stub.GetInfo(pb.GetInfoRequest())
        assert (info.type, info.name) == ("adapter", "TOY")
        assert (info.version, info.git_sha) == (native.adapter_version, native.git_sha)
        assert info.properties["contract"] == "meshplane.adapter.v1"
        assert info.properties["event_stream_id"] == h.adapter.events.stream_id
        assert "meshery" in native.capabilities

        assert (await stub.MeshName(meshes.MeshNameRequest())).name == "TOY"
        health = health_pb2_grpc.HealthStub(h.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=MESHERY_SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_mesh_versions_come_from_the_chart_index() -> None:
    async with toy_adapter() as h:
        versions = await meshery(h).MeshVersions(meshes.MeshVersionsRequest())
        assert list(versions.version) == ["1.30.3", "1.29.6", "1.31.0-rc.1"]
    async with toy_adapter(versions=ToyVersions(unreachable=True)) as h:
        error = await refusal(meshery(h).MeshVersions(meshes.MeshVersionsRequest()))
        assert status_code(error) == StatusCode.UNAVAILABLE
        assert "check --chart-repo" in (error.details() or "")


async def test_apply_runs_on_the_same_runner_with_the_same_ids_and_records() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    async with toy_adapter(executor=executor, **ACCEPTING) as h:
        operation_id = str(uuid.uuid4())
        kube_configs = [
            kubeconfig_text(context="kind-east"),
            kubeconfig_text(server="https://west.example:6443", context="arn:aws:eks:West/c"),
        ]
        response = await meshery(h).ApplyOperation(
            apply_rule(
                "install",
                operation_id=operation_id,
                version="1.29.6",
                namespace="mesh",
                username="meshery-user",
                kube_configs=kube_configs,
            )
        )
        assert (response.operation_id, response.error) == (operation_id, "")

        record = await h.stub.GetOperation(pb.GetOperationRequest(operation_id=operation_id))
        operation = record.operation
        assert (operation.operation, operation.mesh_version, operation.namespace) == (
            "install",
            "1.29.6",
            "mesh",
        )
        assert operation.username == "meshery-user"
        assert list(operation.clusters) == ["kind-east", "arn-aws-eks-west-c"]
        assert dict(operation.parameters) == {"profile": "default"}
        await executor.wait_started(operation_id, clusters=2)
        assert sorted(e.kubeconfig.server for e in executor.executions if e.kubeconfig) == [
            "https://east.example:6443",
            "https://west.example:6443",
        ]
        gate.set()
        done = await h.wait_state(operation_id, *TERMINAL)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED

        # Meshery re-sending its id is the same operation, as natively.
        again = await meshery(h).ApplyOperation(
            apply_rule("install", operation_id=operation_id, kube_configs=kube_configs)
        )
        assert (again.operation_id, again.error) == (operation_id, "")
        assert executor.count(operation_id) == 2  # one run, two clusters

        delete = await meshery(h).ApplyOperation(apply_rule("install", delete_op=True))
        deleted = await h.wait_state(delete.operation_id, *TERMINAL)
        assert deleted.delete and deleted.state == pb.OPERATION_STATE_SUCCEEDED
        assert list(deleted.clusters) == ["default"]  # no kube_configs: the adapter's own


async def test_refusals_are_grpc_statuses_in_meshery_words_and_run_nothing() -> None:
    async with toy_adapter(**ACCEPTING) as h:
        stub = meshery(h)
        await stub.ApplyOperation(apply_rule("install", operation_id="taken"))
        cases = [
            (apply_rule("no-such-op"), StatusCode.NOT_FOUND, "opName: 'no-such-op' is not"),
            (apply_rule("no-such-op"), StatusCode.NOT_FOUND, "(see SupportedOperations)"),
            (apply_rule("install", version="9.9.9"), StatusCode.INVALID_ARGUMENT, "version: '9.9"),
            (
                apply_rule("policy", delete_op=True),
                StatusCode.INVALID_ARGUMENT,
                "send it with delete_op=false",
            ),
            (
                apply_rule("install", kube_configs=[kubeconfig_text(), "- not a mapping\n"]),
                StatusCode.INVALID_ARGUMENT,
                "kube_configs[1]: ",
            ),
            (
                apply_rule("install", namespace="Bad_Namespace"),
                StatusCode.INVALID_ARGUMENT,
                "namespace: 'Bad_Namespace'",
            ),
            (apply_rule("custom"), StatusCode.INVALID_ARGUMENT, "custom_body: operation 'custom'"),
            (
                apply_rule("sample", operation_id="taken"),
                StatusCode.FAILED_PRECONDITION,
                "opName was 'install'",
            ),
            (
                apply_rule("install", operation_id="bad id!"),
                StatusCode.INVALID_ARGUMENT,
                "operation_id",
            ),
        ]
        for request, code, text in cases:
            error = await refusal(stub.ApplyOperation(request))
            assert status_code(error) == code, (text, error.details())
            assert text in (error.details() or ""), error.details()
            assert len(error.details() or "") < 600
        await h.wait_state("taken", *TERMINAL)
        assert {e.operation_id for e in h.executor.executions} == {"taken"}
        assert (await stub.MeshName(meshes.MeshNameRequest())).name == "TOY"


async def test_meshery_kubeconfigs_pass_the_same_judge() -> None:
    exec_plugin = kubeconfig_text().replace(
        "token: t", "exec: {apiVersion: client.authentication.k8s.io/v1, command: touch}"
    )
    async with toy_adapter() as off, toy_adapter(**ACCEPTING) as on:
        error = await refusal(
            meshery(off).ApplyOperation(apply_rule("install", kube_configs=[kubeconfig_text()]))
        )
        assert status_code(error) == StatusCode.FAILED_PRECONDITION
        assert "--allow-request-kubeconfigs" in (error.details() or "")
        error = await refusal(
            meshery(on).ApplyOperation(apply_rule("install", kube_configs=[exec_plugin]))
        )
        assert status_code(error) == StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("kube_configs[0]: users[0].user.exec: ")
        far = kubeconfig_text(server="https://far.example:6443")
        error = await refusal(meshery(on).ApplyOperation(apply_rule("install", kube_configs=[far])))
        assert status_code(error) == StatusCode.PERMISSION_DENIED
        assert "'https://far.example:6443'" in (error.details() or "")
        assert off.executor.executions == [] and on.executor.executions == []


async def test_a_resent_id_of_a_failed_operation_says_what_happened_and_what_to_do() -> None:
    async with toy_adapter(executor=ScriptedExecutor(scripts={"*": Script(fail=True)})) as h:
        first = await meshery(h).ApplyOperation(apply_rule("sample", operation_id="op-f"))
        assert first.error == ""
        await h.wait_state("op-f", *TERMINAL)
        again = await meshery(h).ApplyOperation(apply_rule("sample", operation_id="op-f"))
        assert again.operation_id == "op-f"
        assert "already ran and failed: Deployment toy-0 not ready" in again.error
        assert "check the image registry" in again.error
        assert "new operation_id" in again.error
        assert h.executor.count("op-f") == 1


async def test_process_oam_is_retired_with_what_to_use() -> None:
    async with toy_adapter() as h:
        error = await refusal(
            meshery(h).ProcessOAM(meshes.ProcessOAMRequest(oam_comps=["x"], oam_config="y"))
        )
        assert status_code(error) == StatusCode.UNIMPLEMENTED
        assert "retired" in (error.details() or "")
        assert "opName=custom" in (error.details() or "")


async def test_stream_delivers_running_operations_earlier_events_then_everything_new() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(
        scripts={"*": Script(events=2, gate=gate, gate_attempts=1, event_details="pulling")}
    )
    async with toy_adapter(executor=executor) as h:
        stub = meshery(h)
        # A sample that finishes before the stream opens: its events are not delivered.
        executor.scripts["fast"] = Script()
        await h.stub.ApplyOperation(
            pb.ApplyOperationRequest(
                operation_id="finished", operation="sample", clusters=[pb.Cluster(name="fast")]
            )
        )
        await h.wait_state("finished", *TERMINAL)
        await stub.ApplyOperation(apply_rule("install", operation_id="running"))
        await executor.wait_started("running")

        call = stub.StreamEvents(meshes.EventsRequest())
        early = [await call.read() for _ in range(4)]
        assert {e.operation_id for e in early} == {"running"}
        assert [e.summary for e in early] == [
            "install accepted, attempt 1",
            "install started on default",
            "step 1 on default",
            "step 2 on default",
        ]
        step = early[2]
        assert (step.event_type, step.component, step.component_name) == (
            meshes.INFO,
            "adapter",
            "TOY",
        )
        assert step.details == "pulling\ncluster default · Deployment toy-system/toy-0"

        # Then every new event, whichever operation it belongs to.
        cancel = h.stub.CancelOperation(pb.CancelOperationRequest(operation_id="running"))
        await cancel
        cancelled = await read_until(call, "install cancelled", "running")
        assert cancelled[-1].event_type == meshes.WARN
        executor.scripts["*"] = Script(fail=True)
        await stub.ApplyOperation(apply_rule("sample", operation_id="failing"))
        failed = await read_until(call, "sample failed", "failing")
        error = failed[-1]
        assert error.event_type == meshes.ERROR
        assert (error.error_code, error.probable_cause, error.suggested_remediation) == (
            "WORKLOAD_NOT_READY",
            "image pull back-off",
            "check the image registry",
        )
        assert "Deployment toy-0 not ready on default" in error.details
        assert all(e.operation_id != "finished" for e in early + cancelled + failed)
        call.cancel()


async def test_a_stream_that_falls_behind_resumes_without_losing_events() -> None:
    """Meshery cannot resume by sequence: the door resumes for it (queue of 2, burst of 30)."""
    executor = ScriptedExecutor(scripts={"*": Script(events=30)})
    async with toy_adapter(executor=executor, event_queue_size=2) as h:
        call = meshery(h).StreamEvents(meshes.EventsRequest())
        await eventually(lambda: h.adapter.events.subscriber_count == 1)
        await meshery(h).ApplyOperation(apply_rule("install", operation_id="burst"))
        events = await read_until(call, "install succeeded", "burst")
        steps = [e.summary for e in events if e.summary.startswith("step ")]
        assert steps == [f"step {n} on default" for n in range(1, 31)]
        call.cancel()


async def test_a_stream_behind_more_than_retention_says_how_many_events_it_lost() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(events=30)})
    async with toy_adapter(executor=executor, event_queue_size=2, event_retention=5) as h:
        call = meshery(h).StreamEvents(meshes.EventsRequest())
        await eventually(lambda: h.adapter.events.subscriber_count == 1)
        await meshery(h).ApplyOperation(apply_rule("install", operation_id="flood"))
        events = await read_until(call, "install succeeded", "flood")
        [gap] = [e for e in events if e.error_code == "EVENTS_DROPPED"]
        assert gap.event_type == meshes.WARN
        assert gap.summary.endswith("events were not delivered to this stream")
        assert events[-1].summary == "install succeeded"
        call.cancel()


async def test_identity_rules_hold_for_meshery_callers_as_for_any_other() -> None:
    """With a coordinator link: a Meshery server without the token is refused (no operation is
    recorded); a trusted caller's forwarded end user replaces Meshery's `username`."""
    token = "link-token-0123456789abcdef"
    async with toy_adapter(coordinator_token=token) as h:
        stub = meshery(h)
        error = await refusal(
            stub.ApplyOperation(apply_rule("install", operation_id="rogue", username="admin"))
        )
        assert status_code(error) == StatusCode.UNAUTHENTICATED
        assert h.adapter.runner.get("rogue") is None
        assert status_code(await refusal(stub.MeshName(meshes.MeshNameRequest()))) == (
            StatusCode.UNAUTHENTICATED
        )

        trusted = (("authorization", f"Bearer {token}"), ("x-meshplane-subject", "alice"))
        await stub.ApplyOperation(
            apply_rule("install", operation_id="forwarded", username="typed-in-meshery"),
            metadata=trusted,
        )
        record = h.adapter.runner.get("forwarded")
        assert record is not None and record.username == "alice"


async def test_request_bounds_hold_at_the_meshery_door() -> None:
    async with toy_adapter(**ACCEPTING) as h:
        stub = meshery(h)
        too_many = apply_rule("install", kube_configs=[kubeconfig_text()] * 21)
        error = await refusal(stub.ApplyOperation(too_many))
        assert status_code(error) == StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith("kube_configs: 21 items; at most 20")
        error = await refusal(stub.ApplyOperation(apply_rule("x" * 5000)))
        assert status_code(error) == StatusCode.INVALID_ARGUMENT
        assert "opName" in (error.details() or "")
        assert len(error.details() or "") < 400
        assert h.executor.executions == []
