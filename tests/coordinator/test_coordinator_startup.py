"""Start-up that fails half-way: a clear message, and every part already opened closed again.

Driven through `build_coordinator` / `Coordinator.start` (the parts are inspected afterwards) and
through the real `meshplane coordinator` process (its exit status and message).
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from coordinator.server.assembly import StartupError, build_coordinator
from coordinator.store import StoreClosedError
from tests.coordinator.identities import write_token_file
from tests.coordinator.routing_harness import fakes, make_settings, static


@contextmanager
def _listening() -> Iterator[int]:
    """A loopback port something else already listens on."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


async def test_a_taken_grpc_port_closes_metrics_hub_registry_and_store(tmp_path: Path) -> None:
    async with fakes(("istio", "a")) as (adapter,):
        with _listening() as port:
            coordinator = build_coordinator(
                make_settings(tmp_path, port=port, metrics_port=0, adapters=static(adapter))
            )
            with pytest.raises(StartupError, match=f"cannot serve gRPC on 127.0.0.1:{port}"):
                await coordinator.start()
        assert coordinator.metrics_server is not None
        metrics_port = coordinator.metrics_server.bound_port
        assert metrics_port, "/metrics is served before gRPC"
        assert not _accepts(metrics_port)
        assert coordinator.registry.replicas() == []  # channels and health streams closed
        with pytest.raises(StoreClosedError):
            await coordinator.store.latest_cursor()
        await coordinator.stop()  # nothing left to stop: a no-op
    # (the task guard fails the test if a health stream or event follower is still running)


async def test_a_taken_metrics_port_is_a_startup_error_naming_it(tmp_path: Path) -> None:
    with _listening() as port:
        coordinator = build_coordinator(make_settings(tmp_path, metrics_port=port))
        with pytest.raises(StartupError, match=f"cannot serve /metrics on 127.0.0.1:{port}"):
            await coordinator.start()
    with pytest.raises(StoreClosedError):
        await coordinator.store.latest_cursor()


async def test_an_unopenable_store_is_a_startup_error_and_starts_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "a-directory"
    directory.mkdir()
    async with fakes(("istio", "a")) as (adapter,):
        coordinator = build_coordinator(
            make_settings(tmp_path, store=str(directory), adapters=static(adapter))
        )
        with pytest.raises(StartupError, match=f"cannot open the store {directory}"):
            await coordinator.start()
        assert coordinator.registry.replicas() == []


async def _coordinator_process(tmp_path: Path, *flags: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshplane_cli.main",
        "coordinator",
        f"--token-auth-file={write_token_file(tmp_path / 'auth')}",
        "--log-level=warning",
        *flags,
        *(() if any(flag.startswith("--port=") for flag in flags) else ("--port=0",)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert out == b"", "the address line is printed only once every part is up"
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_the_command_says_which_part_failed_without_a_traceback(tmp_path: Path) -> None:
    with _listening() as port:
        code, err = await _coordinator_process(
            tmp_path, f"--data-dir={tmp_path}", f"--metrics-port={port}"
        )
    assert code == 1
    assert f"meshplane coordinator: cannot serve /metrics on 127.0.0.1:{port}" in err
    assert "--metrics-port" in err and "Traceback" not in err

    with _listening() as port:
        code, err = await _coordinator_process(tmp_path, f"--data-dir={tmp_path}", f"--port={port}")
    assert code == 1
    assert f"meshplane coordinator: cannot serve gRPC on 127.0.0.1:{port}" in err
    assert "Traceback" not in err

    directory = tmp_path / "a-directory"
    directory.mkdir()
    code, err = await _coordinator_process(tmp_path, f"--store={directory}")
    assert code == 1
    assert f"meshplane coordinator: cannot open the store {directory}" in err
    assert "Traceback" not in err
