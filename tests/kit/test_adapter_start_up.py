"""An adapter start-up that fails half way closes what it had opened, in reverse order.

Each case makes one step fail after earlier ones have opened something (the state directory's
lock, the event log's file, the metrics listener, the executor) and then checks from outside
that nothing is left: the lock can be taken again, no socket of this process listens, no file
under the state directory is open, no task runs, and the executor was closed. (The command's
exit and message: `test_adapter_cli`.)
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.process.server import start_adapter
from adapters.kit.process.settings import AdapterSettings
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.state_files import StateDirLock
from tests.kit.toy_adapter import DECLARATION, ScriptedExecutor, ToyVersions, settings

_LISTEN = "0A"


class ClosingExecutor(ScriptedExecutor):
    """The scripted executor, counting how often the adapter closes it."""

    def __init__(self) -> None:
        super().__init__()
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


def _socket_inodes() -> set[str]:
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_ports() -> set[int]:
    """Ports this process listens on (TCP, IPv4 and IPv6)."""
    mine = _socket_inodes()
    ports = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and fields[9] in mine:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def files_open_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


@contextmanager
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield int(busy.getsockname()[1])


async def _start_and_fail(config: AdapterSettings, executor: ClosingExecutor) -> OSError:
    def factory(
        declaration: MeshDeclaration, _settings: AdapterSettings, _metrics: AdapterMetrics
    ) -> tuple[ClosingExecutor, ToyVersions]:
        return executor, ToyVersions()

    with pytest.raises(OSError) as raised:
        await start_adapter(DECLARATION, config, factory)
    return raised.value


def assert_nothing_left(state_dir: Path, listening_before: set[int]) -> None:
    assert files_open_under(state_dir) == []
    assert listening_ports() == listening_before
    assert asyncio.all_tasks() == {asyncio.current_task()}
    StateDirLock(state_dir).release()  # free again


async def test_a_taken_grpc_port_closes_metrics_health_executor_and_lock(tmp_path: Path) -> None:
    executor = ClosingExecutor()
    before = listening_ports()
    with busy_port() as port:
        config = settings(port=port, state_dir=tmp_path, metrics_port=0, health_port=0)
        error = await _start_and_fail(config, executor)
        assert_nothing_left(tmp_path, before | {port})
    assert "is the port already in use?" in str(error)
    assert executor.closed == 1


async def test_a_taken_health_port_closes_what_was_open(tmp_path: Path) -> None:
    executor = ClosingExecutor()
    before = listening_ports()
    with busy_port() as port:
        config = settings(state_dir=tmp_path, metrics_port=0, health_port=port)
        error = await _start_and_fail(config, executor)
        assert_nothing_left(tmp_path, before | {port})
    assert f"127.0.0.1:{port}" in str(error) and "already in use" in str(error)
    assert executor.closed == 1


async def test_an_unusable_event_log_directory_releases_the_lock(tmp_path: Path) -> None:
    (tmp_path / "events").write_text("not a directory", encoding="utf-8")
    executor = ClosingExecutor()
    before = listening_ports()
    error = await _start_and_fail(settings(state_dir=tmp_path, metrics_port=0), executor)
    assert_nothing_left(tmp_path, before)
    assert str(error).startswith(f"--state-dir {tmp_path}: cannot open the event log: ")
    assert "a directory of its own that it can write" in str(error)
    assert executor.closed == 1


async def test_a_stopped_adapter_frees_the_same_things(tmp_path: Path) -> None:
    executor = ClosingExecutor()
    before = listening_ports()

    def factory(
        declaration: MeshDeclaration, _settings: AdapterSettings, _metrics: AdapterMetrics
    ) -> tuple[ClosingExecutor, ToyVersions]:
        return executor, ToyVersions()

    config = settings(state_dir=tmp_path, metrics_port=0, health_port=0)
    adapter = await start_adapter(DECLARATION, config, factory)
    assert listening_ports() - before == {
        adapter.server.port,
        adapter.server.health_port,
        adapter.metrics_server.bound_port if adapter.metrics_server else -1,
    }
    with pytest.raises(OSError, match="in use by another adapter"):
        StateDirLock(tmp_path)
    await asyncio.gather(adapter.stop(), adapter.stop())
    assert_nothing_left(tmp_path, before)
    assert executor.closed == 1
