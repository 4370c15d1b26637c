"""SIGTERM/SIGINT in a real server process: health drains to NOT_SERVING, then a clean exit."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import Any

import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.fixtures_paths import PROJECT_ROOT


async def _events_until(stream: asyncio.StreamReader, wanted: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    while True:
        line = await asyncio.wait_for(stream.readline(), 20)
        if not line:
            raise AssertionError(f"process ended before logging {wanted!r}: {seen}")
        event = json.loads(line)
        seen.append(event)
        if event.get("event") == wanted:
            return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_health_and_exits_zero(sig: signal.Signals) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.serving.signal_server",
        "5",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        started = await _events_until(proc.stderr, "grpc.server_started")
        address = started[-1]["address"]
        async with grpc.aio.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service="")
            )
            first = await asyncio.wait_for(watch.read(), 10)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(sig)
            second = await asyncio.wait_for(watch.read(), 10)
            assert second.status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
        rest = await _events_until(proc.stderr, "grpc.server_stopped")
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    names = [e["event"] for e in rest]
    assert names.index("grpc.signal_received") < names.index("test.shutdown_callback_ran")
    assert names.index("test.shutdown_callback_ran") < names.index("grpc.server_stopped")
    assert next(e for e in rest if e["event"] == "grpc.signal_received")["signal"] == sig.name
