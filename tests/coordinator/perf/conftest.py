"""Loopback servers for the perf tests, each in its own process (own GIL, can stall itself)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.fixtures_paths import PROJECT_ROOT


@dataclass(frozen=True)
class LoopbackServer:
    """A server process listening on 127.0.0.1:port."""

    port: int

    def url(self, path: str = "/") -> str:
        """http:// URL of `path` on this server."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def address(self) -> str:
        """host:port (for gRPC)."""
        return f"127.0.0.1:{self.port}"


def start_server(*args: str) -> tuple[subprocess.Popen[str], LoopbackServer]:
    """Start `loopback_servers` with `args`; it prints its port first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.coordinator.perf.loopback_servers", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        stop_server(process)
        raise RuntimeError(f"loopback server {args} did not start: {line!r}")
    return process, LoopbackServer(int(line))


def stop_server(process: subprocess.Popen[str]) -> None:
    """Stop a server started by start_server (by its own handle)."""
    process.kill()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@contextmanager
def running_server(*args: str) -> Iterator[LoopbackServer]:
    """A `start_server` process for the duration of a ``with`` block (a fixture's body)."""
    process, server = start_server(*args)
    try:
        yield server
    finally:
        stop_server(process)


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A fast HTTP/1.1 keep-alive server."""
    with running_server("http") as server:
        yield server


@pytest.fixture
def stalling_http_server() -> Iterator[LoopbackServer]:
    """An HTTP server whose whole process sleeps 200 ms once, at its 300th request."""
    with running_server("http", "--stall-after", "300", "--stall-ms", "200") as server:
        yield server


@pytest.fixture
def grpc_server() -> Iterator[LoopbackServer]:
    """A gRPC server with the health service ("" is SERVING) and reflection."""
    with running_server("grpc") as server:
        yield server
