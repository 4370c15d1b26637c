"""The coordinator's /metrics, scraped over HTTP before and after real calls.

Before: the coordinator had no metrics at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2

from coordinator.server.passthrough import MESH_METADATA_KEY
from coordinator.server.retention import RetentionPolicy
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.perf.v1 import perf_pb2 as perf_pb
from tests.coordinator.metrics_scrape import Samples, scrape, value
from tests.coordinator.perf.conftest import LoopbackServer, running_server
from tests.coordinator.routing_harness import Client, coordinator, fakes, make_settings, static
from tests.coordinator.test_store import make_event

PREFIX = "meshplane_coordinator"
SERVICE = "meshplane.coordinator.v1.CoordinatorService"


@pytest.fixture
def http_target() -> Iterator[LoopbackServer]:
    with running_server("http") as server:
        yield server


def requests(samples: Samples, method: str, code: str, service: str = SERVICE) -> float:
    return value(
        samples, f"{PREFIX}_grpc_requests_total", service=service, method=method, code=code
    )


async def make_calls(client: Client) -> None:
    """One of each: allowed, unknown mesh, refused by the request bounds, passed through."""
    await client.stub.ListAdapters(cpb.ListAdaptersRequest())
    with pytest.raises(grpc.aio.AioRpcError):
        await client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(mesh="nope", request=apb.ApplyOperationRequest())
        )
    with pytest.raises(grpc.aio.AioRpcError):  # refused by the request bounds: counted too
        await client.stub.GetOperation(cpb.GetOperationRequest(operation_id="o" * 1000))
    await client.stub.ApplyOperation(
        cpb.ApplyOperationRequest(
            mesh="istio", request=apb.ApplyOperationRequest(operation="install")
        )
    )
    await client.adapter_stub.GetInfo(
        apb.GetInfoRequest(), metadata=((MESH_METADATA_KEY, "istio"),)
    )


async def run_perf_test(client: Client, target: LoopbackServer, url: str) -> Samples:
    """Run a 3-second perf test against ``target`` to its end; the metrics scraped during it."""
    perf = client.stub.RunPerformanceTest(
        perf_pb.RunPerformanceTestRequest(
            config=perf_pb.PerformanceTestConfig(
                name="metrics",
                duration=duration_pb2.Duration(seconds=3),
                clients=[
                    perf_pb.PerformanceTestClient(
                        protocol=perf_pb.PROTOCOL_HTTP,
                        endpoint_urls=[target.url("/")],
                        rps=20,
                        connections=1,
                    )
                ],
            )
        ),
        timeout=30,
    )
    first = await perf.read()  # progress: the test is generating load now
    assert first.HasField("progress")
    during = await scrape(url)
    while (reply := await perf.read()) is not grpc.aio.EOF:
        assert reply.HasField("progress") or reply.HasField("result")
    return during


def assert_requests_counted(before: Samples, during: Samples, after: Samples) -> None:
    for method, code in (
        ("ListAdapters", "OK"),
        ("ApplyOperation", "NOT_FOUND"),
        ("GetOperation", "INVALID_ARGUMENT"),
    ):
        assert requests(after, method, code) == requests(before, method, code) + 1
    assert requests(after, "ApplyOperation", "OK") == requests(before, "ApplyOperation", "OK") + 1
    passthrough = "meshplane.adapter.v1.MeshAdapterService"
    assert requests(after, "GetInfo", "OK", passthrough) == 1
    assert requests(after, "RunPerformanceTest", "OK") == 1
    assert value(during, f"{PREFIX}_perf_tests_running") == 1
    assert value(after, f"{PREFIX}_perf_tests_running") == 0


def assert_followers_and_store(before: Samples, after: Samples, replica: str) -> None:
    labels = {"mesh": "istio", "replica": replica}
    assert value(after, f"{PREFIX}_follower_connected", **labels) == 1
    assert value(after, f"{PREFIX}_follower_last_sequence", **labels) == 3
    assert value(after, f"{PREFIX}_follower_skipped_events_total", **labels) == 0
    assert value(after, f"{PREFIX}_store_rows", table="events") == 3
    assert value(before, f"{PREFIX}_store_rows", table="operations") == 0
    assert value(after, f"{PREFIX}_store_rows", table="operations") == 1
    assert value(after, f"{PREFIX}_store_rows", table="perf_results") == 1
    assert value(after, f"{PREFIX}_asyncio_tasks") > 0


async def test_metrics_move_with_calls_followers_store_and_perf_tests(
    tmp_path: Path, http_target: LoopbackServer
) -> None:
    async with (
        fakes(("istio", "a")) as (istio,),
        coordinator(make_settings(tmp_path, adapters=static(istio), metrics_port=0)) as client,
    ):
        url = client.coordinator.metrics_url
        assert url is not None and url.startswith("http://127.0.0.1:")
        await client.wait_serving(istio.address)
        before = await scrape(url)
        await make_calls(client)
        during = await run_perf_test(client, http_target, url)
        after = await scrape(url)
        assert_requests_counted(before, during, after)
        assert_followers_and_store(before, after, istio.address)


async def test_pruned_rows_are_counted(tmp_path: Path) -> None:
    policy = RetentionPolicy(event_count=1, event_age=None, interval_seconds=0.05)
    settings = make_settings(tmp_path, metrics_port=0, retention=policy)
    async with coordinator(settings) as client:
        await client.coordinator.store.append_events([make_event("istio/a", n) for n in (1, 2, 3)])
        url = client.coordinator.metrics_url
        assert url is not None
        async with asyncio.timeout(10):
            while value(await scrape(url), f"{PREFIX}_pruned_rows_total", table="events") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert value(await scrape(url), f"{PREFIX}_store_rows", table="events") == 1
