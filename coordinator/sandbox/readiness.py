"""When a child of `meshplane up` is ready: the line it prints once it listens, then (for gRPC
children) its health check answering SERVING; and the error that names its log when it exits
first."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.sandbox.children import Child, SandboxError
from serving.tls import dial

__all__ = [
    "announced",
    "await_announced",
    "await_line",
    "await_serving",
    "exited_early",
    "kubeconfig_written",
]

_log = structlog.get_logger(__name__)

_POLL_SECONDS = 0.05
_HEALTH_POLL_SECONDS = 0.1
_HEALTH_CALL_SECONDS = 2
_LOG_TAIL_LINES = 5


def announced(line: str) -> dict[str, Any] | None:
    """The JSON line a gRPC child prints once it listens (it has a "grpc" address)."""
    return _json_with(line, "grpc") if line.startswith("{") else None


def _json_with(line: str, key: str) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        document = json.loads(line)
        if isinstance(document, dict) and key in document:
            return document
    return None


def kubeconfig_written(line: str) -> str | None:
    """The line a cluster child prints once its kubeconfig is written (then it is usable)."""
    return line if line.startswith("kubeconfig:") else None


def exited_early(child: Child) -> SandboxError:
    """The error for a child that exited before it was ready: its code and its log's tail."""
    tail = child.log_path.read_text(errors="replace").strip().splitlines()[-_LOG_TAIL_LINES:]
    return SandboxError(
        f"{child.name} exited with {child.process.returncode} before it was ready; "
        f"see {child.log_path}" + ("\n  " + "\n  ".join(tail) if tail else "")
    )


async def await_line(
    child: Child, accept: Callable[[str], Any | None], *, within: float
) -> Any | None:
    """The first stdout line ``accept`` maps to a value; None when the child exited first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        for line in child.stdout_path.read_text(errors="replace").splitlines():
            found = accept(line)
            if found is not None:
                return found
        if child.process.returncode is not None:
            return None
        if loop.time() > deadline:
            raise SandboxError(
                f"{child.name} did not report its address within {within:g}s; see {child.log_path}"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.process.wait(), _POLL_SECONDS)


async def await_announced(child: Child, *, within: float) -> dict[str, Any]:
    """The address line of a gRPC child; SandboxError when it exits before printing it."""
    found: dict[str, Any] | None = await await_line(child, announced, within=within)
    if found is None:
        raise exited_early(child)
    return found


async def await_serving(child: Child, *, within: float) -> None:
    """Until the child's gRPC health check answers SERVING."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with dial(child.address, tls=None) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if await _serving(stub, child):
                return
            if child.process.returncode is not None:
                raise SandboxError(
                    f"{child.name} exited with {child.process.returncode}; see {child.log_path}"
                )
            if loop.time() > deadline:
                raise SandboxError(f"{child.name} is not SERVING; see {child.log_path}")
            await asyncio.sleep(_HEALTH_POLL_SECONDS)


async def _serving(stub: health_pb2_grpc.HealthStub, child: Child) -> bool:
    try:
        answer = await stub.Check(
            health_pb2.HealthCheckRequest(service=""), timeout=_HEALTH_CALL_SECONDS
        )
    except Exception as exc:  # not listening yet, or still starting
        _log.debug("sandbox.not_serving_yet", child=child.name, error=repr(exc))
        return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
