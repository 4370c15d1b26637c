"""The coordinator's perf RPCs over gRPC: a real coordinator, real load on loopback servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2
from kubernetes.aio import client as _kube_client
from kubernetes.aio import config as _kube_config

from coordinator.perf import (
    ClientConfig,
    EnvironmentInfo,
    HistogramBucket,
    LatencySummary,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Protocol,
    TestConfig,
    env_id,
    mesh_config_id,
    wrk_path,
)
from coordinator.perf.limits import PerfLimits
from coordinator.perf.service import record_from_result, result_from_record, save_result
from coordinator.store import open_store
from kubesim.harness import RunningSim
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.perf.v1 import perf_pb2 as pb
from tests.coordinator.perf.conftest import LoopbackServer, running_server
from tests.coordinator.routing_harness import (
    Client,
    code_of,
    coordinator,
    fakes,
    make_settings,
    static,
)

# The client's modules carry no usable annotations.
kube_client: Any = _kube_client
kube_config: Any = _kube_config


@pytest.fixture
def http_target() -> Iterator[LoopbackServer]:
    """The perf tests' loopback HTTP/1.1 server, in its own process."""
    with running_server("http") as server:
        yield server


@pytest.fixture
def grpc_target() -> Iterator[LoopbackServer]:
    """The perf tests' loopback gRPC server (health + reflection), in its own process."""
    with running_server("grpc") as server:
        yield server


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(value * 1e9))
    return duration


def _request(
    url: str,
    *,
    rps: float = 0.0,
    connections: int = 4,
    duration_s: float = 0.0,
    requests: int = 0,
    mesh: str = "",
    labels: dict[str, str] | None = None,
    **client: Any,
) -> pb.RunPerformanceTestRequest:
    client.setdefault("protocol", pb.PROTOCOL_HTTP)
    config = pb.PerformanceTestConfig(
        name="loopback",
        labels=labels or {},
        request_count=requests,
        clients=[
            pb.PerformanceTestClient(
                endpoint_urls=[url], rps=rps, connections=connections, **client
            )
        ],
    )
    if duration_s:
        config.duration.CopyFrom(_seconds(duration_s))
    return pb.RunPerformanceTestRequest(config=config, mesh=mesh)


async def _run(
    client: Client, request: pb.RunPerformanceTestRequest
) -> tuple[list[pb.PerformanceProgress], pb.PerformanceResult]:
    """Every progress message, then the one result (which must come last)."""
    progress: list[pb.PerformanceProgress] = []
    results: list[pb.PerformanceResult] = []
    async for response in client.stub.RunPerformanceTest(request, timeout=60):
        assert not results, "nothing may follow the result"
        if response.HasField("progress"):
            progress.append(response.progress)
        else:
            results.append(response.result)
    assert len(results) == 1
    return progress, results[0]


@pytest.mark.timing
async def test_run_streams_progress_then_the_stored_result_in_ms(
    tmp_path: Path, http_target: LoopbackServer
) -> None:
    async with coordinator(make_settings(tmp_path)) as client:
        request = _request(http_target.url("/delay/5"), rps=200, connections=8, duration_s=2.0)
        progress, result = await _run(client, request)

        assert progress, "a 2 s test reports progress about once a second"
        assert all(p.test_id == result.test_id for p in progress)
        assert [p.requests for p in progress] == sorted(p.requests for p in progress)
        assert progress[0].elapsed.ToNanoseconds() / 1e9 == pytest.approx(1.0, abs=0.5)
        # intended send times 0, 5 ms, ..., 1995 ms: exactly 400, each held 5 ms by the server
        assert result.request_count == 400
        assert result.http_status_counts == {"200": 400}
        assert result.requested_qps == 200
        assert result.actual_qps == pytest.approx(200, rel=0.1)
        assert 5.0 <= result.latencies.p50_ms < 100.0  # ms: not 0.005 (s), not 5000 (us)
        assert result.latencies.min_ms >= 5.0
        elapsed = result.end_time.ToDatetime() - result.start_time.ToDatetime()
        assert elapsed.total_seconds() == pytest.approx(2.0, abs=0.5)
        assert result.config.clients[0].endpoint_urls == [http_target.url("/delay/5")]
        assert not result.HasField("mesh")  # no mesh named: none recorded

        stored = await client.stub.GetPerformanceResult(
            pb.GetPerformanceResultRequest(id=result.id)
        )
        assert stored.result == result
        listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest())
        assert [r.id for r in listed.results] == [result.id]


async def test_grpc_load_through_the_coordinator(
    tmp_path: Path, grpc_target: LoopbackServer
) -> None:
    async with coordinator(make_settings(tmp_path)) as client:
        request = _request(
            grpc_target.address,
            requests=200,
            protocol=pb.PROTOCOL_GRPC,
            grpc_method="grpc.health.v1.Health/Check",
            body='{"service": ""}',
        )
        _, result = await _run(client, request)

    assert result.request_count == 200
    assert result.grpc_code_counts == {"OK": 200}
    assert result.http_status_counts == {}
    assert result.error_count == 0
    assert 0 < result.latencies.p50_ms < 1000


@pytest.mark.skipif(
    wrk_path() is None, reason="wrk is not installed (apt-get install wrk; CI installs it)"
)
async def test_wrk_through_the_coordinator(tmp_path: Path, http_target: LoopbackServer) -> None:
    async with coordinator(make_settings(tmp_path, perf=PerfLimits(allow_wrk=True))) as client:
        request = _request(
            http_target.url("/delay/1"), connections=2, duration_s=1.0, load_generator="wrk"
        )
        progress, result = await _run(client, request)
        stored = await client.stub.GetPerformanceResult(
            pb.GetPerformanceResultRequest(id=result.id)
        )

    assert progress == []  # wrk reports only when it ends
    assert result.load_generator == "wrk"
    assert result.request_count > 0
    assert result.error_count == 0
    assert result.latencies.min_ms >= 1.0  # /delay/1: milliseconds, as from the built-in one
    assert stored.result == result


async def _create_nodes(sim: RunningSim, names: list[str]) -> int:
    """Create Nodes; return how many the cluster has then (kubesim may add its own)."""
    api = await kube_config.new_client_from_config(
        config_file=str(sim.kubeconfig), persist_config=False
    )
    try:
        core = kube_client.CoreV1Api(api)
        for name in names:
            await core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        response = await core.list_node_without_preload_content()
        try:
            return len(json.loads(await response.read())["items"])
        finally:
            response.release()
    finally:
        await api.close()


async def _wait_serving(client: Client, mesh: str) -> None:
    async with asyncio.timeout(20):
        while True:
            listing = await client.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            if any(
                a.mesh == mesh and any(r.state == cpb.REPLICA_STATE_SERVING for r in a.replicas)
                for a in listing.adapters
            ):
                return
            await asyncio.sleep(0.05)


async def test_mesh_from_its_adapter_and_environment_from_the_cluster(
    tmp_path: Path, http_target: LoopbackServer, kubesim: RunningSim
) -> None:
    node_count = await _create_nodes(kubesim, ["node-a", "node-b"])
    assert node_count >= 2
    async with fakes(("istio", "a")) as (adapter,):
        settings = make_settings(tmp_path, adapters=static(adapter), kubeconfig=kubesim.kubeconfig)
        async with coordinator(settings) as client:
            await _wait_serving(client, "istio")
            _, baseline = await _run(client, _request(http_target.url(), requests=20))
            _, meshed = await _run(client, _request(http_target.url(), requests=20, mesh="istio"))

            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await _run(client, _request(http_target.url(), requests=20, mesh="linkerd"))
            only_istio = await client.stub.ListPerformanceResults(
                pb.ListPerformanceResultsRequest(mesh_type="istio")
            )
            only_none = await client.stub.ListPerformanceResults(
                pb.ListPerformanceResultsRequest(mesh_type="none")
            )

    # the version is the installed one the adapter's GetMeshStatus reports (the fake: 1.2.3)
    assert meshed.mesh == pb.MeshInfo(type="istio", version="1.2.3", adapter=adapter.address)
    assert meshed.mesh_config_id == mesh_config_id(MeshInfo(type="istio", version="1.2.3"))
    assert [c.method for c in adapter.fake.received].count("GetMeshStatus") >= 1
    # kubesim serves /version as v1.34.0-kubesim; the nodes are those listed after creating two
    expected_env = EnvironmentInfo(kubernetes_version="v1.34.0-kubesim", node_count=node_count)
    for result in (baseline, meshed):
        assert result.environment == pb.EnvironmentInfo(
            kubernetes_version="v1.34.0-kubesim", node_count=node_count
        )
        assert result.env_id == env_id(expected_env)
    assert baseline.mesh_config_id == mesh_config_id(None)
    assert baseline.mesh_config_id != meshed.mesh_config_id

    assert code_of(unknown.value) == grpc.StatusCode.NOT_FOUND
    assert "'linkerd'" in unknown.value.details() and "istio" in unknown.value.details()
    assert [r.id for r in only_istio.results] == [meshed.id]
    assert [r.id for r in only_none.results] == [baseline.id]


def _invalid_requests(url: str) -> list[tuple[pb.RunPerformanceTestRequest, str]]:
    """Requests the coordinator must refuse, each with the field its message must name."""
    no_clients = pb.RunPerformanceTestRequest(config=pb.PerformanceTestConfig())
    return [
        (_request(url, requests=10, protocol=pb.PROTOCOL_UNSPECIFIED), "clients[0].protocol"),
        (_request(url, rps=-5, duration_s=1), "clients[0].rps"),
        (_request("", requests=10), "clients[0].endpoint_urls"),
        (_request(url, requests=10, connections=-1), "clients[0].connections"),
        (_request(url), "config.duration"),
        (_request(url, requests=10, protocol=pb.PROTOCOL_GRPC), "clients[0].grpc_method"),
        (_request(url, requests=10, protocol=pb.PROTOCOL_TCP), "clients[0].protocol"),
        (_request(url, rps=10, duration_s=1, load_generator="wrk"), "clients[0].rps"),
        (_request(url, requests=10, load_generator="fortio"), "clients[0].load_generator"),
        (_request(url, requests=10, load_generator="ab"), "load_generator"),
        (no_clients, "config.clients"),
    ]


async def test_invalid_configs_are_refused_naming_the_field(
    tmp_path: Path, http_target: LoopbackServer
) -> None:
    async with coordinator(make_settings(tmp_path)) as client:
        for request, field in _invalid_requests(http_target.url()):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _run(client, request)
            assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT, field
            assert field in refused.value.details(), (field, refused.value.details())

        # a gRPC method the server does not have is found out by reflection, before any load
        with pytest.raises(grpc.aio.AioRpcError) as unknown_method:
            await _run(
                client,
                _request(
                    http_target.address,
                    requests=10,
                    protocol=pb.PROTOCOL_GRPC,
                    grpc_method="no.such.Service/Call",
                ),
            )
        assert code_of(unknown_method.value) in (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.UNAVAILABLE,
        )

        listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest())
        assert list(listed.results) == []


async def run_three(client: Client, target: LoopbackServer) -> list[pb.PerformanceResult]:
    """Three runs, each slower than the one before, labelled run=0..2 and lab=x."""
    runs = []
    for number, path in enumerate(("/", "/delay/2", "/delay/4")):
        _, result = await _run(
            client,
            _request(target.url(path), requests=40, labels={"run": str(number), "lab": "x"}),
        )
        runs.append(result)
    return runs


async def listed_ids(client: Client, **request: Any) -> list[str]:
    listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest(**request))
    return [r.id for r in listed.results]


async def assert_list_filters(client: Client, runs: list[pb.PerformanceResult]) -> None:
    """Newest first; by labels, by test id, and by start time either side of the second run."""
    first, second, third = runs
    listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest())
    assert [r.id for r in listed.results] == [third.id, second.id, first.id]
    assert listed.next_page_token == ""
    assert await listed_ids(client, labels={"run": "1", "lab": "x"}) == [second.id]
    assert await listed_ids(client, test_id=first.test_id) == [first.id]
    assert await listed_ids(client, started_after=second.start_time) == [third.id, second.id]
    assert await listed_ids(client, started_before=second.start_time) == [first.id]


async def assert_list_pages(client: Client, runs: list[pb.PerformanceResult]) -> None:
    first, second, third = runs
    stub = client.stub
    page_one = await stub.ListPerformanceResults(pb.ListPerformanceResultsRequest(page_size=2))
    assert [r.id for r in page_one.results] == [third.id, second.id]
    assert page_one.next_page_token
    page_two = await stub.ListPerformanceResults(
        pb.ListPerformanceResultsRequest(page_size=2, page_token=page_one.next_page_token)
    )
    assert [r.id for r in page_two.results] == [first.id]
    assert page_two.next_page_token == ""
    with pytest.raises(grpc.aio.AioRpcError) as bad_token:
        await stub.ListPerformanceResults(
            pb.ListPerformanceResultsRequest(page_token="not-a-token")
        )
    assert code_of(bad_token.value) == grpc.StatusCode.INVALID_ARGUMENT


async def assert_missing_result_not_found(client: Client) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await client.stub.GetPerformanceResult(pb.GetPerformanceResultRequest(id="no-such-result"))
    assert code_of(missing.value) == grpc.StatusCode.NOT_FOUND
    assert "no-such-result" in missing.value.details()


async def assert_compare(
    client: Client, first: pb.PerformanceResult, third: pb.PerformanceResult
) -> None:
    """Comparing two results gives each metric's relative difference; one id or an unknown
    id is refused."""
    stub = client.stub
    compared = await stub.ComparePerformanceResults(
        pb.ComparePerformanceResultsRequest(ids=[first.id, third.id])
    )
    with pytest.raises(grpc.aio.AioRpcError) as one_id:
        await stub.ComparePerformanceResults(pb.ComparePerformanceResultsRequest(ids=[first.id]))
    with pytest.raises(grpc.aio.AioRpcError) as unknown_id:
        await stub.ComparePerformanceResults(
            pb.ComparePerformanceResultsRequest(ids=[first.id, "gone"])
        )
    assert list(compared.ids) == [first.id, third.id]
    rows = {row.metric: row for row in compared.rows}
    assert set(rows) >= {"p50", "p75", "p90", "p99", "p99.9", "max", "avg", "qps"}
    p50 = rows["p50"]
    assert p50.unit == "ms"
    assert [c.result_id for c in p50.cells] == [first.id, third.id]
    assert not p50.cells[0].HasField("relative_difference")
    base, other = first.latencies.p50_ms, third.latencies.p50_ms
    assert p50.cells[1].relative_difference == pytest.approx((other - base) / base)
    assert p50.cells[1].relative_difference > 0  # /delay/4 is slower than /
    assert code_of(one_id.value) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(unknown_id.value) == grpc.StatusCode.NOT_FOUND
    assert "'gone'" in unknown_id.value.details()


async def test_list_filters_and_pages_get_and_compare(
    tmp_path: Path, http_target: LoopbackServer
) -> None:
    async with coordinator(make_settings(tmp_path)) as client:
        runs = await run_three(client, http_target)
        await assert_list_filters(client, runs)
        await assert_list_pages(client, runs)
        await assert_missing_result_not_found(client)
        await assert_compare(client, runs[0], runs[2])


async def test_results_survive_a_coordinator_restart(
    tmp_path: Path, http_target: LoopbackServer, store_location: str
) -> None:
    settings = make_settings(tmp_path, store=store_location)  # SQLite file, then PostgreSQL
    async with coordinator(settings) as client:
        _, fast = await _run(client, _request(http_target.url(), requests=40))
        _, slow = await _run(client, _request(http_target.url("/delay/3"), requests=40))
        before = await client.stub.ComparePerformanceResults(
            pb.ComparePerformanceResultsRequest(ids=[fast.id, slow.id])
        )

    async with coordinator(settings) as client:  # a new process' worth of state, same file
        got = await client.stub.GetPerformanceResult(pb.GetPerformanceResultRequest(id=slow.id))
        listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest())
        after = await client.stub.ComparePerformanceResults(
            pb.ComparePerformanceResultsRequest(ids=[fast.id, slow.id])
        )

    assert got.result == slow
    assert [r.id for r in listed.results] == [slow.id, fast.id]
    assert after == before


async def test_a_cancelled_run_stops_generating_load(
    tmp_path: Path, http_target: LoopbackServer
) -> None:
    async with coordinator(make_settings(tmp_path)) as client:
        call = client.stub.RunPerformanceTest(
            _request(http_target.url(), rps=50, duration_s=30), timeout=60
        )
        first = await call.read()
        assert first.HasField("progress")
        call.cancel()

        # the coordinator shares this loop, so its run task is visible here: it must end
        running = [t for t in asyncio.all_tasks() if t.get_name().startswith("perf-run-")]
        assert len(running) == 1
        done, _ = await asyncio.wait(running, timeout=5)
        assert done == set(running)
        assert running[0].cancelled()
        listed = await client.stub.ListPerformanceResults(pb.ListPerformanceResultsRequest())
        assert list(listed.results) == []


def _full_result() -> PerformanceResult:
    start = datetime(2026, 3, 2, 10, 15, 30, 123456, tzinfo=UTC)
    config = TestConfig(
        id="test-1",
        name="round trip",
        labels={"team": "mesh"},
        duration_s=2.5,
        clients=(
            ClientConfig(
                protocol=Protocol.GRPC,
                endpoint_urls=("127.0.0.1:9", "127.0.0.1:10"),
                connections=3,
                rps=125.5,
                headers={"x-a": "1"},
                body='{"service": ""}',
                grpc_method="grpc.health.v1.Health/Check",
                request_timeout_s=1.5,
            ),
        ),
    )
    mesh = MeshInfo(type="Istio", version="1.30.3", adapter="127.0.0.1:10000")
    environment = EnvironmentInfo(kubernetes_version="v1.33.1", node_count=3)
    return PerformanceResult(
        id="result-1",
        test_id=config.id,
        start_time=start,
        end_time=start + timedelta(seconds=2.5),
        latencies=LatencySummary(
            min_ms=0.25,
            average_ms=1.5,
            p50_ms=1.25,
            p75_ms=1.75,
            p90_ms=2.0,
            p99_ms=5.5,
            p999_ms=9.75,
            max_ms=12.0,
            stddev_ms=0.5,
        ),
        actual_qps=124.9,
        requested_qps=125.5,
        request_count=312,
        error_count=2,
        load_generator=LoadGenerator.BUILTIN,
        connections=3,
        mesh_config_id=mesh_config_id(mesh),
        env_id=env_id(environment),
        labels={"team": "mesh"},
        grpc_code_counts={"OK": 310, "UNAVAILABLE": 2},
        transport_error_counts={"timeout": 1},
        histogram=(
            HistogramBucket(start_ms=0.25, end_ms=1.0, count=100, cumulative_percent=32.05),
            HistogramBucket(start_ms=1.0, end_ms=12.0, count=212, cumulative_percent=100.0),
        ),
        mesh=mesh,
        environment=environment,
        config=config,
    )


async def test_stored_documents_read_back_exactly(store_location: str) -> None:
    result = _full_result()
    record = record_from_result(result)
    assert record.mesh == "istio"  # listed by lower-case mesh type
    assert record.created_at == result.start_time
    assert record.document["result"]["latencies"]["p99_ms"] == 5.5

    store = open_store(store_location)
    await store.migrate()
    try:
        await save_result(store, result)
        stored = await store.get_perf_result(result.id)
    finally:
        await store.close()
    assert stored is not None
    assert result_from_record(stored) == result
