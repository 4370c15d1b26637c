"""`meshplane adapter`: settings from flags and environment, and the real process lifecycle
(kill -9 mid-operation, SIGTERM, restart on the same state directory, resume)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from adapters.kit.process.settings import SettingsError, add_arguments, settings_from_args
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from meshplane_cli.main import main
from tests.fixtures_paths import PROJECT_ROOT
from tests.kit.toy_adapter import DECLARATION, TERMINAL

TOY_ADAPTER = (
    sys.executable,
    "-m",
    "meshplane_cli.main",
    "adapter",
    "tests.kit.toy_adapter:DECLARATION",
    "--executor-factory",
    "tests.kit.toy_adapter:executor_factory",
)
"""The command line of a toy adapter process (flags follow)."""


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_win_over_environment_which_wins_over_defaults(tmp_path: Path) -> None:
    env = {
        "MESHPLANE_ADAPTER_PORT": "12000",
        "MESHPLANE_ADAPTER_STATE_DIR": str(tmp_path),
        "MESHPLANE_ADAPTER_METRICS_PORT": "9464",
        "MESHPLANE_ADAPTER_OPERATION_TIMEOUT": "30",
    }
    settings = settings_from_args(_parse("--port", "13000"), DECLARATION, env)
    assert settings.port == 13000
    assert settings.state_dir == tmp_path
    assert settings.metrics_port == 9464
    assert settings.operation_timeout_seconds == 30.0
    assert settings.chart_repo == DECLARATION.chart_repository
    assert settings.manifests_url == DECLARATION.manifests_url
    defaults = settings_from_args(_parse(), DECLARATION, {})
    assert defaults.port == DECLARATION.default_port
    assert defaults.metrics_port is None  # 0 / unset: no metrics listener
    assert defaults.state_dir is None
    assert defaults.tls is None


def test_bad_values_name_their_source() -> None:
    with pytest.raises(SettingsError, match=r"MESHPLANE_ADAPTER_EVENT_RETENTION='0'"):
        settings_from_args(_parse(), DECLARATION, {"MESHPLANE_ADAPTER_EVENT_RETENTION": "0"})
    with pytest.raises(SettingsError, match=r"--port='70000'"):
        settings_from_args(_parse("--port", "70000"), DECLARATION, {})
    with pytest.raises(SettingsError, match="--tls-cert and --tls-key go together"):
        settings_from_args(_parse("--tls-cert", "c.pem"), DECLARATION, {})


def test_journal_and_event_log_byte_bounds() -> None:
    defaults = settings_from_args(_parse(), DECLARATION, {})
    assert (defaults.journal_bytes, defaults.event_retention_bytes) == (256 << 20, 64 << 20)
    chosen = settings_from_args(
        _parse("--journal-bytes", "8388608"),
        DECLARATION,
        {"MESHPLANE_ADAPTER_EVENT_RETENTION_BYTES": "1048576"},
    )
    assert (chosen.journal_bytes, chosen.event_retention_bytes) == (8 << 20, 1 << 20)
    with pytest.raises(SettingsError, match="below one record's maximum"):
        settings_from_args(_parse("--journal-bytes", "1000"), DECLARATION, {})


def test_request_kubeconfigs_are_off_unless_the_operator_turns_them_on() -> None:
    defaults = settings_from_args(_parse(), DECLARATION, {})
    assert not defaults.kubeconfig_policy.accept
    from_env = settings_from_args(
        _parse(),
        DECLARATION,
        {
            "MESHPLANE_ADAPTER_ALLOW_REQUEST_KUBECONFIGS": "true",
            "MESHPLANE_ADAPTER_ALLOWED_CLUSTER_SERVERS": "*.corp.example, 10.0.0.7:6443",
        },
    )
    assert from_env.kubeconfig_policy.accept
    assert [p.text for p in from_env.allowed_cluster_servers] == [
        "*.corp.example",
        "10.0.0.7:6443",
    ]
    flags = _parse("--allow-request-kubeconfigs", "--allowed-cluster-servers", "[::1]:6443")
    assert settings_from_args(flags, DECLARATION, {}).kubeconfig_policy.accept
    with pytest.raises(SettingsError, match="--allow-request-kubeconfigs needs --allowed-cluster"):
        settings_from_args(_parse("--allow-request-kubeconfigs"), DECLARATION, {})
    with pytest.raises(SettingsError, match=r"--allowed-cluster-servers='\*'.*no pattern for"):
        settings_from_args(_parse("--allowed-cluster-servers", "*"), DECLARATION, {})
    with pytest.raises(SettingsError, match="MESHPLANE_ADAPTER_ALLOW_REQUEST_KUBECONFIGS='maybe'"):
        settings_from_args(
            _parse(), DECLARATION, {"MESHPLANE_ADAPTER_ALLOW_REQUEST_KUBECONFIGS": "maybe"}
        )


def test_help_lists_the_environment_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["adapter", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for name in ("PORT", "KUBECONFIG", "CHART_REPO", "MANIFESTS_URL", "METRICS_PORT", "STATE_DIR"):
        assert f"MESHPLANE_ADAPTER_{name}" in text
    for name in ("ALLOW_REQUEST_KUBECONFIGS", "ALLOWED_CLUSTER_SERVERS"):
        assert f"MESHPLANE_ADAPTER_{name}" in text


def test_unknown_mesh_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapter", "nosuchmesh"]) == 2
    assert "known meshes: consul, istio, linkerd" in capsys.readouterr().err


class AdapterProcess:
    """`meshplane adapter` in a child process, with the line it announces on start."""

    def __init__(self, process: asyncio.subprocess.Process, announced: dict[str, Any]) -> None:
        self.process = process
        self.announced = announced
        self.channel = grpc.aio.insecure_channel(announced["grpc"])
        self.stub = pb_grpc.MeshAdapterServiceStub(self.channel)

    async def state(self, operation_id: str) -> pb.Operation:
        reply = await self.stub.GetOperation(pb.GetOperationRequest(operation_id=operation_id))
        operation: pb.Operation = reply.operation
        return operation

    async def wait_state(self, operation_id: str, *states: int) -> pb.Operation:
        async with asyncio.timeout(20):
            while True:
                operation = await self.state(operation_id)
                if operation.state in states:
                    return operation
                await asyncio.sleep(0.02)


@asynccontextmanager
async def adapter_process(state_dir: Path, log: Path) -> AsyncIterator[AdapterProcess]:
    with log.open("ab") as stderr:
        process = await asyncio.create_subprocess_exec(
            *TOY_ADAPTER,
            "--port",
            "0",
            "--state-dir",
            str(state_dir),
            "--shutdown-grace",
            "2",
            cwd=PROJECT_ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            line = await process.stdout.readline()
        assert line, f"adapter exited before announcing itself; see {log}"
        running = AdapterProcess(process, json.loads(line))
        try:
            yield running
        finally:
            await running.channel.close()
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_killed_and_stopped_adapters_resume_where_they_left_off(tmp_path: Path) -> None:
    state, log = tmp_path / "state", tmp_path / "adapter.log"
    install = pb.ApplyOperationRequest(
        operation_id="k1", operation="install", parameters={"profile": "demo"}
    )

    async with adapter_process(state, log) as first:
        assert first.announced["mesh"] == "toy"
        assert first.announced["metrics"] is None
        stream_id = first.announced["event_stream_id"]
        await first.stub.ApplyOperation(install)
        await first.wait_state("k1", pb.OPERATION_STATE_RUNNING)
        first.process.send_signal(signal.SIGKILL)
        assert await first.process.wait() == -signal.SIGKILL

    async with adapter_process(state, log) as second:
        assert second.announced["event_stream_id"] == stream_id
        killed = await second.state("k1")
        assert killed.state == pb.OPERATION_STATE_INTERRUPTED
        assert "without a graceful shutdown" in killed.error.probable_cause
        await second.stub.ApplyOperation(
            pb.ApplyOperationRequest(operation_id="t1", operation="sample")
        )
        await second.wait_state("t1", pb.OPERATION_STATE_RUNNING)
        second.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await second.process.wait() == 0

    async with adapter_process(state, log) as third:
        stopped = await third.state("t1")
        assert stopped.state == pb.OPERATION_STATE_INTERRUPTED
        assert "shut down" in stopped.error.probable_cause
        resumed = await third.stub.ApplyOperation(install)
        assert resumed.created and resumed.operation.attempt == 2
        done = await third.wait_state("k1", *TERMINAL)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED

        events: list[pb.Event] = []
        async with asyncio.timeout(10):
            call = third.stub.StreamEvents(pb.StreamEventsRequest())
            async for response in call:
                events.append(response.event)
                event = response.event
                if event.operation_id == "k1" and event.operation_state == (
                    pb.OPERATION_STATE_SUCCEEDED
                ):
                    break
            call.cancel()
        sequences = [e.sequence for e in events]
        assert sequences == list(range(1, len(sequences) + 1)), "gap or repeat across restarts"
        assert {e.event_stream_id for e in events} == {stream_id}
        k1_states = [e.operation_state for e in events if e.operation_id == "k1"]
        assert k1_states.count(pb.OPERATION_STATE_INTERRUPTED) == 1
        assert k1_states[-1] == pb.OPERATION_STATE_SUCCEEDED
        third.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            assert await third.process.wait() == 0


def run_toy_adapter_command(*flags: str) -> subprocess.CompletedProcess[str]:
    """``meshplane adapter`` on the toy declaration with ``flags``, to its exit."""
    return subprocess.run(
        [*TOY_ADAPTER, *flags],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_busy_port_is_reported_with_exit_code_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_toy_adapter_command("--port", str(port))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"cannot start: gRPC: Failed to bind to address 127.0.0.1:{port}" in result.stderr


def test_an_unusable_state_dir_is_named_with_exit_code_1(tmp_path: Path) -> None:
    (tmp_path / "events").write_text("not a directory", encoding="utf-8")
    result = run_toy_adapter_command("--port", "0", "--state-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert (
        f"meshplane adapter: cannot start: --state-dir {tmp_path}: cannot open the event log:"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
