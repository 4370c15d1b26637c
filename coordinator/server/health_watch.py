"""Follow one replica's ``grpc.health.v1.Health/Watch`` stream for as long as it is registered.

One long-lived stream per replica instead of periodic pings: a change (NOT_SERVING on drain,
a dropped connection) reaches the coordinator at once, and an idle replica costs nothing but
HTTP/2 keepalives. Stream errors are reported as not serving with the error text, then the
stream is reopened after an exponential backoff with jitter, reset once a message arrives.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.retry_policies import BackoffWait

__all__ = ["ADAPTER_SERVICE", "HealthReport", "describe_rpc_error", "follow_health"]

_log = structlog.get_logger(__name__)

ADAPTER_SERVICE = "meshplane.adapter.v1.MeshAdapterService"

_STATUS_NAMES = {
    health_pb2.HealthCheckResponse.SERVING: "SERVING",
    health_pb2.HealthCheckResponse.NOT_SERVING: "NOT_SERVING",
    health_pb2.HealthCheckResponse.SERVICE_UNKNOWN: "SERVICE_UNKNOWN",
    health_pb2.HealthCheckResponse.UNKNOWN: "UNKNOWN",
}


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """What the stream says now; ``error`` explains a replica that is not serving.

    ``stream_lost`` marks reports about the stream itself breaking or ending (rather than a
    status the replica sent): the replica may come back as a new process.
    """

    serving: bool
    error: str
    stream_lost: bool = False


OnReport = Callable[[HealthReport], Awaitable[None]]


def describe_rpc_error(error: BaseException) -> str:
    """``UNAVAILABLE: connection refused`` for gRPC errors, the exception text otherwise."""
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details() or ''}".rstrip(": ")
    return f"{type(error).__name__}: {error}"


async def follow_health(
    channel: Any,
    on_report: OnReport,
    *,
    service: str = ADAPTER_SERVICE,
    backoff_initial: float = 0.1,
    backoff_max: float = 5.0,
    rng: random.Random | None = None,
) -> None:
    """Watch ``service`` on ``channel`` until cancelled, calling ``on_report`` on every change.

    An exception raised by ``on_report`` (e.g. the replica's GetInfo failed after it came back)
    is treated like a stream error: reported as not serving, then retried after backoff.
    """
    stub = health_pb2_grpc.HealthStub(channel)
    wait = BackoffWait(initial=backoff_initial, maximum=backoff_max)
    jitter = rng or random.Random()
    failures = 0
    while True:
        error, received = await _one_stream(stub, service, on_report)
        if received:
            failures = 0
        if error is None:
            error = "health stream ended (replica draining or restarting)"
        failures += 1
        await on_report(HealthReport(serving=False, error=error, stream_lost=True))
        ceiling = wait.step(failures)
        await asyncio.sleep(jitter.uniform(ceiling / 2, ceiling))


async def _one_stream(stub: Any, service: str, on_report: OnReport) -> tuple[str | None, bool]:
    """Run one Watch stream: (None when it ended cleanly, else why it failed; got a message)."""
    call = stub.Watch(health_pb2.HealthCheckRequest(service=service))
    first = True
    try:
        async for response in call:
            serving = response.status == health_pb2.HealthCheckResponse.SERVING
            name = _STATUS_NAMES.get(response.status, str(response.status))
            report = HealthReport(
                serving=serving, error="" if serving else f"health: {service} is {name}"
            )
            first = False
            try:
                await on_report(report)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.info("health.refresh_failed", error=describe_rpc_error(exc))
                return describe_rpc_error(exc), False
        return None, not first
    except grpc.aio.AioRpcError as exc:
        return describe_rpc_error(exc), not first
    finally:
        call.cancel()
