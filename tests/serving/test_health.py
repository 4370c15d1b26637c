"""The health service on its own: statuses, Watch streams, and draining that ends them."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2

from serving.health import NOT_SERVING, SERVICE_UNKNOWN, SERVING, HealthService

ADAPTER = "meshplane.adapter.v1.MeshAdapterService"


def request(service: str) -> health_pb2.HealthCheckRequest:
    return health_pb2.HealthCheckRequest(service=service)


async def test_watch_reports_changes_and_drain_ends_the_stream() -> None:
    health = HealthService()
    await health.set(ADAPTER, True)
    watch = health.Watch(request(ADAPTER), None)
    assert (await anext(watch)).status == SERVING
    # The generator is suspended right after sending SERVING; a change now must not be lost.
    await health.set(ADAPTER, False)
    assert (await anext(watch)).status == NOT_SERVING
    await health.set(ADAPTER, True)
    assert (await anext(watch)).status == SERVING
    await health.drain()
    assert (await anext(watch)).status == NOT_SERVING
    assert await anext(watch, None) is None


async def test_drain_while_the_watcher_is_between_send_and_wait() -> None:
    health = HealthService()
    watch = health.Watch(request(""), None)
    assert (await anext(watch)).status == SERVING
    await health.drain()  # before the watcher resumed from its yield
    assert (await anext(watch)).status == NOT_SERVING
    assert await anext(watch, None) is None


async def test_watcher_waiting_for_a_change_wakes_on_drain() -> None:
    health = HealthService()
    watch = health.Watch(request(""), None)
    assert (await anext(watch)).status == SERVING
    waiting = asyncio.ensure_future(anext(watch))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await health.drain()
    assert (await asyncio.wait_for(waiting, 2)).status == NOT_SERVING


async def test_unknown_service_is_reported_and_drain_freezes_statuses() -> None:
    health = HealthService()
    assert health.status("nope") == SERVICE_UNKNOWN
    watch = health.Watch(request("later"), None)
    assert (await anext(watch)).status == SERVICE_UNKNOWN
    await health.set("later", True)
    assert (await anext(watch)).status == SERVING
    await health.drain()
    await health.set("later", True)
    assert health.draining
    assert health.status("later") == NOT_SERVING
    assert health.status("") == NOT_SERVING
    await watch.aclose()
