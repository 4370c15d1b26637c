"""MeshAdapterService through real gRPC on 127.0.0.1:0: the toy mesh with a scripted executor."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.grpc.servicer import SERVICE_NAME
from adapters.kit.model.server_patterns import parse_server_patterns
from adapters.kit.process.server import RunningAdapter, start_adapter
from adapters.kit.run.state_files import StateDirInUse
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from tests.kit.toy_adapter import (
    TERMINAL,
    Script,
    ScriptedExecutor,
    ToyVersions,
    eventually,
    settings,
    status_code,
    toy_adapter,
)

StatusCode = grpc.StatusCode


ACCEPTING: dict[str, Any] = {
    "allow_request_kubeconfigs": True,
    "allowed_cluster_servers": parse_server_patterns(
        "east.example:6443,west.example:6443,10.0.0.1:8443"
    ),
}
"""Settings of an adapter that accepts request kubeconfigs for the servers these tests name."""


def kubeconfig_text(server: str = "https://east.example:6443", context: str = "e") -> str:
    """A small well-formed kubeconfig whose one context points at ``server``."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
            "current-context": context,
        }
    )


def custom(body: str, **fields: Any) -> pb.ApplyOperationRequest:
    return pb.ApplyOperationRequest(operation="custom", custom_body=body, **fields)


def billion_laughs(levels: int = 9) -> str:
    """A ConfigMap whose aliases expand to 10**levels nodes."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:", "  l0: &l0 lol"]
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
CLUSTER_ROLE = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
    "rules: [{apiGroups: [''], resources: [pods], verbs: [get]}]\n"
)


def install(operation_id: str = "", **fields: Any) -> pb.ApplyOperationRequest:
    return pb.ApplyOperationRequest(operation_id=operation_id, operation="install", **fields)


async def collect(call: Any, count: int | None = None, within: float = 10) -> list[pb.Event]:
    """Read events from a StreamEvents call (all until it ends, or ``count``)."""
    events: list[pb.Event] = []
    async with asyncio.timeout(within):
        async for response in call:
            events.append(response.event)
            if count is not None and len(events) >= count:
                break
    return events


async def read_until_final(call: Any, operation_id: str, within: float = 10) -> list[pb.Event]:
    """Read until the event that puts ``operation_id`` in a terminal state."""
    events: list[pb.Event] = []
    async with asyncio.timeout(within):
        async for response in call:
            events.append(response.event)
            event = response.event
            if event.operation_id == operation_id and event.operation_state in TERMINAL:
                return events
    raise AssertionError(f"stream ended before {operation_id} finished: {events}")


async def test_info_catalogue_and_versions() -> None:
    async with toy_adapter() as h:
        info = await h.stub.GetInfo(pb.GetInfoRequest())
        assert info.mesh == "toy"
        assert info.contract_version == "v1"
        assert info.adapter_version
        assert info.git_sha
        assert info.event_stream_id == h.adapter.events.stream_id
        assert info.chart_repository_url == "https://charts.toy.example/"
        assert info.default_namespace == "toy-system"
        assert {"cancel", "custom-operation", "multi-cluster"} <= set(info.capabilities)

        catalogue = await h.stub.ListOperations(pb.ListOperationsRequest())
        by_id = {op.id: op for op in catalogue.operations}
        assert list(by_id) == ["install", "sample", "policy", "custom"]
        assert by_id["install"].category == pb.OPERATION_CATEGORY_INSTALL
        assert list(by_id["install"].parameters[0].allowed_values) == ["minimal", "default", "demo"]
        assert by_id["policy"].parameters[0].required
        assert not by_id["policy"].supports_delete

        versions = await h.stub.ListMeshVersions(pb.ListMeshVersionsRequest())
        assert [v.version for v in versions.versions] == ["1.30.3", "1.29.6", "1.31.0-rc.1"]
        assert versions.default_version == "1.30.3"
        assert versions.versions[2].prerelease
        assert versions.versions[0].create_time.seconds > 0


async def test_unreachable_chart_repository_is_unavailable_with_remediation() -> None:
    async with toy_adapter(versions=ToyVersions(unreachable=True)) as h:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.ListMeshVersions(pb.ListMeshVersionsRequest())
        assert status_code(raised.value) == StatusCode.UNAVAILABLE
        assert "--chart-repo" in raised.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.ApplyOperation(install("x"))
        assert status_code(raised.value) == StatusCode.UNAVAILABLE
        assert "--mirror" in raised.value.details()


INVALID = [
    (
        pb.ApplyOperationRequest(operation="nope"),
        StatusCode.NOT_FOUND,
        "operation: 'nope' is not in the toy catalogue; available: install, sample, policy, custom",
    ),
    (
        install(namespace="Bad_NS"),
        StatusCode.INVALID_ARGUMENT,
        "namespace: 'Bad_NS' is not a valid DNS-1123 label",
    ),
    (
        install(mesh_version="9.9.9"),
        StatusCode.INVALID_ARGUMENT,
        "mesh_version: '9.9.9' is not in the chart repository; available: 1.30.3, 1.29.6",
    ),
    (
        install(parameters={"profile": "huge"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.profile: 'huge' is not one of minimal, default, demo",
    ),
    (
        install(delete=True, parameters={"purge-crds": "yes"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.purge-crds: 'yes' is not one of true, false, force",
    ),
    (
        install(parameters={"purge-crds": "true"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.purge-crds: only applies to a delete (uninstall)",
    ),
    (
        install(parameters={"create-namespace": "please"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.create-namespace: 'please' is not one of true, false",
    ),
    (
        install(parameters={"size": "xl"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.size: operation 'install' has no parameter 'size'; it accepts: "
        "adopt-existing, create-namespace, profile, purge-crds",
    ),
    (
        pb.ApplyOperationRequest(operation="policy"),
        StatusCode.INVALID_ARGUMENT,
        "parameters.mode: is required",
    ),
    (
        pb.ApplyOperationRequest(operation="policy", delete=True, parameters={"mode": "STRICT"}),
        StatusCode.INVALID_ARGUMENT,
        "delete: operation 'policy' cannot be undone",
    ),
    (
        pb.ApplyOperationRequest(operation="custom"),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: operation 'custom' applies the YAML documents in custom_body",
    ),
    (
        pb.ApplyOperationRequest(operation="sample", custom_body="kind: Pod"),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: operation 'sample' takes no custom_body",
    ),
    (
        pb.ApplyOperationRequest(operation="sample", parameters={"replicas": "zero"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.replicas: 'zero' is not a whole number from 1 to 10",
    ),
    (
        install("has space"),
        StatusCode.INVALID_ARGUMENT,
        "operation_id: 'has space' is not a valid id",
    ),
    (
        install("x" * 129),
        StatusCode.INVALID_ARGUMENT,
        "operation_id:",
    ),
    (
        install(clusters=[pb.Cluster(name="a"), pb.Cluster(name="a")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[1].name: 'a' appears twice",
    ),
    (
        install(timeout=Duration(seconds=-1)),
        StatusCode.INVALID_ARGUMENT,
        "timeout: -1s is out of range; give a duration from 0 to 2h",
    ),
    (
        custom(billion_laughs()),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: the YAML, document 1: YAML aliases expand to more than 10000 nodes",
    ),
    (
        custom("a: [unclosed\n"),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: the YAML is not valid YAML",
    ),
    (
        custom("apiVersion: v1\nkind: ConfigMap\ndata: {}\n"),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: object 1 (ConfigMap) has no metadata",
    ),
    (
        custom(CLUSTER_ROLE),
        StatusCode.PERMISSION_DENIED,
        "custom_body: ClusterRole reader: grants or binds permissions across the cluster "
        "(rule cluster-rbac); request YAML may not do this unless the adapter's operator starts "
        "it with --allow-elevated-objects",
    ),
    (
        custom(CONFIG_MAP, parameters={"allow_cluster_scoped": "true"}),
        StatusCode.INVALID_ARGUMENT,
        "parameters.allow_cluster_scoped: is no longer accepted",
    ),
    (
        install(namespace="kube-system"),
        StatusCode.PERMISSION_DENIED,
        "namespace: namespace kube-system is protected (rule protected-namespace); choose another",
    ),
    (
        custom(
            CONFIG_MAP.replace("{name: settings}", "{name: settings, namespace: elsewhere}"),
            namespace="books",
        ),
        StatusCode.INVALID_ARGUMENT,
        "custom_body: ConfigMap elsewhere/settings names namespace 'elsewhere' but the "
        "request's namespace is 'books'",
    ),
    (
        install(clusters=[pb.Cluster(name="a"), pb.Cluster(name="b", kubeconfig="{{{ junk")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[1].kubeconfig: the kubeconfig is not valid YAML",
    ),
    (
        install(clusters=[pb.Cluster(name="a", kubeconfig="secret: yes")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[0].kubeconfig: secret: is not a field meshplane accepts",
    ),
    (
        install(clusters=[pb.Cluster(name="a", kubeconfig=kubeconfig_text(), context="x")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[0].context: contexts has no entry named 'x' (it has 'e')",
    ),
    (
        install(clusters=[pb.Cluster(name="a", kubeconfig=kubeconfig_text("ftp://files"))]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[0].kubeconfig: clusters[0].cluster.server: 'ftp://files' is not an http(s) URL",
    ),
    (
        install(clusters=[pb.Cluster(name="a"), pb.Cluster(name="")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[1].name: every cluster needs a name",
    ),
    (
        install(clusters=[pb.Cluster(name="a"), pb.Cluster(name="a", kubeconfig="{{{ junk")]),
        StatusCode.INVALID_ARGUMENT,
        "clusters[1].name: 'a' appears twice",
    ),
]


async def test_invalid_requests_name_the_field_and_run_nothing() -> None:
    async with toy_adapter(**ACCEPTING) as h:
        for request, code, message in INVALID:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await h.stub.ApplyOperation(request)
            assert status_code(raised.value) == code, request
            assert raised.value.details().startswith(message), raised.value.details()
        assert h.executor.executions == []
        assert len(h.adapter.journal) == 0


async def test_a_yaml_bomb_is_refused_at_once_and_the_adapter_keeps_serving() -> None:
    async with toy_adapter() as h:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.ApplyOperation(custom(billion_laughs(12), operation_id="bomb"))
        assert time.monotonic() - started < 1.0
        assert status_code(raised.value) == StatusCode.INVALID_ARGUMENT
        assert "billion laughs" in raised.value.details()
        assert h.adapter.runner.get("bomb") is None
        good = await h.stub.ApplyOperation(custom(CONFIG_MAP, operation_id="good"))
        assert good.created
        done = await h.wait_state("good", *TERMINAL)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED
        assert [e.operation_id for e in h.executor.executions] == ["good"]


async def test_good_custom_bodies_and_kubeconfigs_are_accepted() -> None:
    async with toy_adapter(**ACCEPTING) as h:
        elsewhere = CONFIG_MAP.replace("{name: settings}", "{name: settings, namespace: shop}")
        accepted = await h.stub.ApplyOperation(
            custom(
                CONFIG_MAP + "---\n" + elsewhere,
                operation_id="mixed",
                clusters=[
                    pb.Cluster(name="east", kubeconfig=kubeconfig_text()),
                    pb.Cluster(
                        name="west", kubeconfig=kubeconfig_text("https://10.0.0.1:8443", "w")
                    ),
                ],
            )
        )
        assert accepted.created
        # No namespace in the request: like kubectl without -n, objects keep their own.
        assert accepted.operation.namespace == "default"
        done = await h.wait_state("mixed", *TERMINAL)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED
        assert sorted(e.cluster for e in h.executor.executions) == ["east", "west"]


async def test_apply_returns_at_once_and_the_work_runs_in_the_background() -> None:
    gate = asyncio.Event()
    async with toy_adapter(executor=ScriptedExecutor(scripts={"*": Script(gate=gate)})) as h:
        response = await h.stub.ApplyOperation(install(parameters={"profile": "demo"}))
        assert response.created
        assert re.fullmatch(r"[0-9a-f-]{36}", response.operation_id)
        assert response.operation.state in (pb.OPERATION_STATE_PENDING, pb.OPERATION_STATE_RUNNING)
        assert response.operation.mesh_version == "1.30.3"
        assert response.operation.namespace == "toy-system"
        assert dict(response.operation.parameters) == {"profile": "demo"}
        assert list(response.operation.clusters) == ["default"]
        running = await h.wait_state(response.operation_id, pb.OPERATION_STATE_RUNNING)
        assert running.start_time.seconds > 0
        gate.set()
        done = await h.wait_state(response.operation_id, *TERMINAL)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED
        assert done.attempt == 1
        assert done.end_time.ToDatetime() >= done.start_time.ToDatetime()
        [result] = done.cluster_results
        assert (result.cluster, result.state, result.objects_applied) == (
            "default",
            pb.OPERATION_STATE_SUCCEEDED,
            3,
        )


async def test_same_operation_id_returns_the_same_operation() -> None:
    gate = asyncio.Event()
    async with toy_adapter(executor=ScriptedExecutor(scripts={"*": Script(gate=gate)})) as h:
        first = await h.stub.ApplyOperation(install("op-1"))
        again = await h.stub.ApplyOperation(install("op-1", namespace="toy-system"))
        assert first.created and not again.created
        assert again.operation_id == "op-1"
        gate.set()
        await h.wait_state("op-1", *TERMINAL)
        after = await h.stub.ApplyOperation(
            install("op-1", mesh_version="1.30.3", parameters={"profile": "default"})
        )
        assert not after.created
        assert after.operation.state == pb.OPERATION_STATE_SUCCEEDED
        assert h.executor.count("op-1") == 1


async def test_reused_operation_id_with_a_different_body_is_rejected() -> None:
    async with toy_adapter() as h:
        await h.stub.ApplyOperation(install("op-1", parameters={"profile": "demo"}))
        cases = [
            (install("op-1", parameters={"profile": "minimal"}), "parameters.profile"),
            (install("op-1"), "parameters.profile"),
            (pb.ApplyOperationRequest(operation_id="op-1", operation="sample"), "operation"),
            (install("op-1", delete=True, parameters={"profile": "demo"}), "delete"),
            (
                install("op-1", parameters={"profile": "demo"}, clusters=[pb.Cluster(name="x")]),
                "clusters",
            ),
        ]
        for request, field in cases:
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await h.stub.ApplyOperation(request)
            assert status_code(raised.value) == StatusCode.FAILED_PRECONDITION
            assert f"already names a different request: {field} was" in raised.value.details()
        await h.wait_state("op-1", *TERMINAL)
        assert h.executor.count("op-1") == 1


async def test_clusters_run_in_parallel_and_one_failure_fails_the_operation() -> None:
    executor = ScriptedExecutor(
        scripts={
            "east": Script(delay=0.4),
            "west": Script(delay=0.4, fail=True),
            "north": Script(delay=0.4),
        }
    )
    async with toy_adapter(executor=executor, **ACCEPTING) as h:
        clusters = [
            pb.Cluster(name="east", kubeconfig=kubeconfig_text(), context="e"),
            pb.Cluster(name="west"),
            pb.Cluster(name="north"),
        ]
        started = time.monotonic()
        await h.stub.ApplyOperation(install("multi", clusters=clusters))
        done = await h.wait_state("multi", *TERMINAL)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"clusters ran one after another ({elapsed:.2f}s)"
        assert done.state == pb.OPERATION_STATE_FAILED
        assert done.error.code == "WORKLOAD_NOT_READY"
        assert done.error.suggested_remediation == "check the image registry"
        assert [(r.cluster, r.state) for r in done.cluster_results] == [
            ("east", pb.OPERATION_STATE_SUCCEEDED),
            ("west", pb.OPERATION_STATE_FAILED),
            ("north", pb.OPERATION_STATE_SUCCEEDED),
        ]
        assert done.cluster_results[1].error.probable_cause == "image pull back-off"
        east = next(e for e in executor.executions if e.cluster == "east")
        assert east.kubeconfig is not None
        assert east.kubeconfig.server == "https://east.example:6443"
        west = next(e for e in executor.executions if e.cluster == "west")
        assert west.kubeconfig is None


async def test_cancel_stops_the_work() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    async with toy_adapter(executor=executor) as h:
        await h.stub.ApplyOperation(install("op-c"))
        await executor.wait_started("op-c")
        cancelled = await h.stub.CancelOperation(pb.CancelOperationRequest(operation_id="op-c"))
        assert cancelled.operation.state == pb.OPERATION_STATE_CANCELLED
        assert executor.executions[0].cancelled
        assert not executor.executions[0].finished
        again = await h.stub.CancelOperation(pb.CancelOperationRequest(operation_id="op-c"))
        assert again.operation.state == pb.OPERATION_STATE_CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.CancelOperation(pb.CancelOperationRequest(operation_id="nope"))
        assert status_code(raised.value) == StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.GetOperation(pb.GetOperationRequest(operation_id="nope"))
        assert status_code(raised.value) == StatusCode.NOT_FOUND


async def test_timeout_fails_the_operation_with_a_remediation() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(gate=asyncio.Event())})
    async with toy_adapter(executor=executor) as h:
        await h.stub.ApplyOperation(install("slow", timeout=Duration(nanos=200_000_000)))
        done = await h.wait_state("slow", *TERMINAL)
        assert done.state == pb.OPERATION_STATE_FAILED
        assert done.error.code == "OPERATION_TIMEOUT"
        assert "0.2s" in done.error.message
        assert "longer timeout" in done.error.suggested_remediation
        assert done.cluster_results[0].state == pb.OPERATION_STATE_FAILED
        assert executor.executions[0].cancelled


async def test_executor_crash_is_an_internal_failure() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(raise_error=True)})
    async with toy_adapter(executor=executor) as h:
        await h.stub.ApplyOperation(install("crash"))
        done = await h.wait_state("crash", *TERMINAL)
        assert done.state == pb.OPERATION_STATE_FAILED
        assert done.error.code == "INTERNAL"
        assert "scripted crash" in done.error.message


async def test_events_replay_then_follow_in_order() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(events=3)})
    async with toy_adapter(executor=executor) as h:
        await h.stub.ApplyOperation(install("first"))
        await h.wait_state("first", *TERMINAL)
        call = h.stub.StreamEvents(pb.StreamEventsRequest())
        replayed = await collect(call, count=7)
        # accepted, started, 3 steps, cluster outcome, final.
        assert [e.operation_state for e in replayed] == [
            pb.OPERATION_STATE_PENDING,
            pb.OPERATION_STATE_RUNNING,
            pb.OPERATION_STATE_RUNNING,
            pb.OPERATION_STATE_RUNNING,
            pb.OPERATION_STATE_RUNNING,
            pb.OPERATION_STATE_RUNNING,
            pb.OPERATION_STATE_SUCCEEDED,
        ]
        assert replayed[2].component == "Deployment toy-system/toy-0"
        assert replayed[2].cluster == "default"
        assert all(e.operation == "install" and e.mesh == "toy" for e in replayed)
        assert {e.event_stream_id for e in replayed} == {h.adapter.events.stream_id}
        await h.stub.ApplyOperation(install("second", parameters={"profile": "demo"}))
        live = await read_until_final(call, "second")
        call.cancel()
        sequences = [e.sequence for e in replayed + live]
        assert sequences == list(range(1, len(sequences) + 1))
        assert {e.operation_id for e in live} == {"second"}


async def test_operation_filter_and_reconnect_from_last_sequence() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(events=4)})
    async with toy_adapter(executor=executor) as h:
        for operation_id in ("a", "b", "c"):
            await h.stub.ApplyOperation(install(operation_id))
            await h.wait_state(operation_id, *TERMINAL)
        calls = [h.stub.StreamEvents(pb.StreamEventsRequest()) for _ in range(3)]
        calls.append(h.stub.StreamEvents(pb.StreamEventsRequest(operation_id="b")))
        everything = await collect(calls[0], count=24)
        assert len(everything) == 24

        only_b = await collect(calls[3], count=8)
        assert {e.operation_id for e in only_b} == {"b"}
        from_b = [e.sequence for e in everything if e.operation_id == "b"]
        assert [e.sequence for e in only_b] == from_b

        part = await collect(calls[1], count=10)
        calls[1].cancel()
        resumed = h.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=part[-1].sequence))
        calls.append(resumed)
        rest = await collect(resumed, count=14)
        assert [e.sequence for e in part + rest] == [e.sequence for e in everything]

        # Subscribers go away with their calls, however the call ends.
        assert h.adapter.events.subscriber_count == 4
        for call in calls:
            call.cancel()
        await eventually(lambda: h.adapter.events.subscriber_count == 0)


async def test_after_sequence_outside_retention_is_out_of_range() -> None:
    async with toy_adapter(event_retention=5) as h:
        for operation_id in ("a", "b"):
            await h.stub.ApplyOperation(install(operation_id))
            await h.wait_state(operation_id, *TERMINAL)
        newest = h.adapter.events.last_sequence
        for after in (1, newest + 5):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await collect(h.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=after)))
            assert status_code(raised.value) == StatusCode.OUT_OF_RANGE
        assert "oldest retained event is" in raised.value.details() or "restart from" in (
            raised.value.details()
        )
        replay = await collect(h.stub.StreamEvents(pb.StreamEventsRequest()), count=5)
        assert [e.sequence for e in replay] == list(range(newest - 4, newest + 1))


@pytest.mark.timing
async def test_slow_subscriber_is_cut_off_while_others_and_the_operation_proceed() -> None:
    big = "x" * 16_384
    executor = ScriptedExecutor(
        scripts={"*": Script(events=600, event_details=big, event_interval=0.001)}
    )
    async with toy_adapter(executor=executor, event_queue_size=64) as h:
        slow_channel = grpc.aio.insecure_channel(
            h.adapter.address,
            options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16_384)],
        )
        try:
            slow = pb_grpc.MeshAdapterServiceStub(slow_channel).StreamEvents(
                pb.StreamEventsRequest()
            )
            fast = h.stub.StreamEvents(pb.StreamEventsRequest())
            await h.stub.ApplyOperation(install("flood"))
            fast_events = await read_until_final(fast, "flood", within=30)
            fast.cancel()
            done = await h.wait_state("flood", *TERMINAL)
            assert done.state == pb.OPERATION_STATE_SUCCEEDED
            assert len(fast_events) == 600 + 4
            slow_events: list[pb.Event] = []
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                async with asyncio.timeout(10):
                    async for response in slow:
                        slow_events.append(response.event)
            assert status_code(raised.value) == StatusCode.RESOURCE_EXHAUSTED
            last = slow_events[-1].sequence
            assert f"resume StreamEvents with after_sequence={last}" in raised.value.details()
            assert last < len(fast_events)
            resumed = await collect(
                h.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=last)),
                count=len(fast_events) - last,
            )
            assert [e.sequence for e in slow_events + resumed] == [e.sequence for e in fast_events]
        finally:
            await slow_channel.close()


async def test_restart_keeps_operations_events_and_stream_and_resumes_interrupted(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    async with toy_adapter(executor=executor, state_dir=state, stop=False) as h:
        await h.stub.ApplyOperation(pb.ApplyOperationRequest(operation_id="s", operation="sample"))
        gate.set()
        await h.wait_state("s", *TERMINAL)
        gate.clear()
        await h.stub.ApplyOperation(install("i", parameters={"profile": "demo"}))
        await executor.wait_started("i")
        stream = h.stub.StreamEvents(pb.StreamEventsRequest())
        seen = await collect(stream, count=h.adapter.events.last_sequence)
        stream_id = (await h.stub.GetInfo(pb.GetInfoRequest())).event_stream_id
        stopping = asyncio.ensure_future(h.adapter.stop())
        tail = []
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(10):
                async for response in stream:
                    tail.append(response.event)
        assert status_code(raised.value) == StatusCode.UNAVAILABLE
        await stopping
        assert [e.operation_state for e in tail] == [pb.OPERATION_STATE_INTERRUPTED]
        assert f"after_sequence={tail[-1].sequence}" in raised.value.details()
        assert executor.executions[-1].cancelled
    last_seen = tail[-1].sequence
    assert [e.sequence for e in seen + tail] == list(range(1, last_seen + 1))

    gate.set()
    async with toy_adapter(executor=executor, state_dir=state) as h:
        info = await h.stub.GetInfo(pb.GetInfoRequest())
        assert info.event_stream_id == stream_id
        sample = (await h.stub.GetOperation(pb.GetOperationRequest(operation_id="s"))).operation
        assert sample.state == pb.OPERATION_STATE_SUCCEEDED
        stopped = (await h.stub.GetOperation(pb.GetOperationRequest(operation_id="i"))).operation
        assert stopped.state == pb.OPERATION_STATE_INTERRUPTED
        assert stopped.error.code == "ADAPTER_STOPPED"
        assert "same operation_id" in stopped.error.suggested_remediation

        follow = h.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=last_seen))
        resumed = await h.stub.ApplyOperation(install("i", parameters={"profile": "demo"}))
        assert resumed.created
        assert resumed.operation.attempt == 2
        assert dict(resumed.operation.parameters) == {"profile": "demo"}
        after = await read_until_final(follow, "i")
        follow.cancel()
        assert [e.sequence for e in after] == list(range(last_seen + 1, last_seen + 1 + len(after)))
        assert after[-1].operation_state == pb.OPERATION_STATE_SUCCEEDED
        done = await h.wait_state("i", *TERMINAL)
        assert (done.state, done.attempt) == (pb.OPERATION_STATE_SUCCEEDED, 2)
        assert [e.attempt for e in executor.executions if e.operation_id == "i"] == [1, 2]
        # Finished now: the same id is just the same operation again.
        again = await h.stub.ApplyOperation(install("i", parameters={"profile": "demo"}))
        assert not again.created
        assert executor.count("i") == 2


async def test_a_state_dir_serves_one_adapter_at_a_time(tmp_path: Path) -> None:
    async with toy_adapter(state_dir=tmp_path) as h:
        with pytest.raises(StateDirInUse, match="in use by another adapter"):
            async with toy_adapter(state_dir=tmp_path):
                pass
        await h.stub.ApplyOperation(install("still-fine"))
        await h.wait_state("still-fine", *TERMINAL)
    async with toy_adapter(state_dir=tmp_path) as h:
        assert (await h.wait_state("still-fine", *TERMINAL)).state == pb.OPERATION_STATE_SUCCEEDED


async def test_health_and_metrics_are_served() -> None:
    executor = ScriptedExecutor(scripts={"bad": Script(fail=True)})
    async with toy_adapter(executor=executor, metrics_port=0) as h:
        health = health_pb2_grpc.HealthStub(h.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        await h.stub.ApplyOperation(install("ok"))
        await h.wait_state("ok", *TERMINAL)
        await h.stub.ApplyOperation(install("bad", clusters=[pb.Cluster(name="bad")]))
        await h.wait_state("bad", *TERMINAL)
        h.adapter.metrics.kubernetes_retry()
        url = h.adapter.metrics_url
        assert url is not None
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            text = await response.text()
    ops = 'meshplane_adapter_operations_total{mesh="toy",operation="install",state='
    assert ops + '"SUCCEEDED"} 1.0' in text
    assert ops + '"FAILED"} 1.0' in text
    assert ops + '"PENDING"} 2.0' in text
    assert (
        'meshplane_adapter_operation_duration_seconds_count{mesh="toy",operation="install"} 2.0'
        in text
    )
    assert 'meshplane_adapter_kubernetes_retries_total{mesh="toy"} 1.0' in text
    assert 'meshplane_adapter_events_total{mesh="toy",severity="ERROR"}' in text


async def test_mesh_status_through_the_executor() -> None:
    executor = ScriptedExecutor()
    async with toy_adapter(executor=executor) as h:
        status = await h.stub.GetMeshStatus(pb.GetMeshStatusRequest())
        assert (status.installed, status.version, status.namespace, status.cluster) == (
            True,
            "1.30.3",
            "toy-system",
            "default",
        )
        assert status.components[0].ready
        other = await h.stub.GetMeshStatus(
            pb.GetMeshStatusRequest(cluster=pb.Cluster(name="east"), namespace="mesh")
        )
        assert (other.cluster, other.namespace) == ("east", "mesh")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.GetMeshStatus(pb.GetMeshStatusRequest(namespace="No"))
        assert status_code(raised.value) == StatusCode.INVALID_ARGUMENT
        executor.status_error = "connection refused"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.GetMeshStatus(pb.GetMeshStatusRequest())
        assert status_code(raised.value) == StatusCode.UNAVAILABLE
        assert "connection refused" in raised.value.details()


async def test_stop_turns_health_off_before_interrupting_work() -> None:
    executor = ScriptedExecutor(scripts={"*": Script(gate=asyncio.Event(), unwind_seconds=0.5)})
    async with toy_adapter(executor=executor, stop=False) as h:
        await h.stub.ApplyOperation(install("long"))
        await executor.wait_started("long")
        health = health_pb2_grpc.HealthStub(h.channel)
        stopping = asyncio.ensure_future(h.adapter.stop())
        seen_while_running = False
        async with asyncio.timeout(10):
            while not stopping.done():
                reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
                record = h.adapter.journal.get("long")
                assert record is not None
                if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    seen_while_running |= record.state.value == "RUNNING"
                    break
                await asyncio.sleep(0.01)
        await stopping
        assert seen_while_running, "health was still SERVING while work was being interrupted"
        record = h.adapter.journal.get("long")
        assert record is not None and record.state.value == "INTERRUPTED"


async def test_shutdown_refuses_new_operations(tmp_path: Path) -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    async with toy_adapter(executor=executor) as h:
        await h.stub.ApplyOperation(install("running"))
        await executor.wait_started("running")
        await h.adapter.runner.shutdown(1.0)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.ApplyOperation(install("late"))
        assert status_code(raised.value) == StatusCode.UNAVAILABLE
        record = await h.wait_state("running", *TERMINAL)
        assert record.state == pb.OPERATION_STATE_INTERRUPTED


def refused_custom_requests() -> list[tuple[pb.ApplyOperationRequest, str, str]]:
    """(request, the refusal's prefix naming the field, a fragment saying the fix)."""
    return [
        (custom(billion_laughs(12)), "custom_body:", "billion laughs"),
        (
            custom(CLUSTER_ROLE),
            "custom_body: ClusterRole reader:",
            "--allow-elevated-objects",
        ),
        (
            custom(CLUSTER_ROLE, parameters={"allow_cluster_scoped": "true"}),
            "parameters.allow_cluster_scoped:",
            "--allow-elevated-objects",
        ),
        (
            custom(CONFIG_MAP, clusters=[pb.Cluster(name="x", kubeconfig=": : :\n- [")]),
            "clusters[0].kubeconfig:",
            "not valid YAML",
        ),
    ]


async def assert_refused_before_the_cluster(adapter: RunningAdapter) -> None:
    """Each bad request is refused at once, naming its field, and nothing is recorded."""
    async with grpc.aio.insecure_channel(adapter.address) as channel:
        stub = pb_grpc.MeshAdapterServiceStub(channel)
        for request, prefix, fragment in refused_custom_requests():
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.ApplyOperation(request)
            assert time.monotonic() - started < 1.0
            assert status_code(raised.value) in (
                StatusCode.INVALID_ARGUMENT,
                StatusCode.PERMISSION_DENIED,
            )
            assert raised.value.details().startswith(prefix), raised.value.details()
            assert fragment in raised.value.details()
        assert len(adapter.journal) == 0


async def apply_elevated_custom(adapter: RunningAdapter, cluster: pb.Cluster) -> pb.Operation:
    """A custom body with a ConfigMap and a ClusterRole, run to its end on ``cluster``."""
    async with grpc.aio.insecure_channel(adapter.address) as channel:
        stub = pb_grpc.MeshAdapterServiceStub(channel)
        accepted = await stub.ApplyOperation(
            custom(CONFIG_MAP + "---\n" + CLUSTER_ROLE, operation_id="good", clusters=[cluster])
        )
        assert accepted.created
        async with asyncio.timeout(30):
            while accepted.operation.state not in TERMINAL:
                await asyncio.sleep(0.05)
                accepted = await stub.GetOperation(pb.GetOperationRequest(operation_id="good"))
        done: pb.Operation = accepted.operation
        return done


async def test_the_istio_adapter_refuses_bad_input_before_touching_the_cluster(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    from adapters.istio.declaration import DECLARATION as ISTIO
    from adapters.kit.process.cli import real_executor_factory

    base = settings(
        kubeconfig=kubesim.kubeconfig,
        cache_dir=tmp_path / "cache",
        allow_request_kubeconfigs=True,
        allowed_cluster_servers=parse_server_patterns(kubesim.url.removeprefix("http://")),
    )
    adapter = await start_adapter(ISTIO, base, real_executor_factory)
    sim_cluster = pb.Cluster(name="sim", kubeconfig=kubesim.kubeconfig.read_text())
    try:
        await assert_refused_before_the_cluster(adapter)
        await adapter.stop()
        # The operator's switch, not the request, lets the YAML hold cluster-scoped objects.
        adapter = await start_adapter(
            ISTIO, dataclasses.replace(base, allow_elevated_objects=True), real_executor_factory
        )
        done = await apply_elevated_custom(adapter, sim_cluster)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
            assert await session.get("v1", "ConfigMap", "settings", done.namespace) is not None
            role = await session.get("rbac.authorization.k8s.io/v1", "ClusterRole", "reader")
            assert role is not None
    finally:
        await adapter.stop()


async def test_the_adapter_prepares_its_own_cluster_once_it_serves() -> None:
    # Connecting and reading discovery happen while the adapter is idle, not in the first
    # operation's time.
    async with toy_adapter() as h:
        await eventually(lambda: h.executor.prepared == ["default"])
