"""`meshplane get|wait|cancel`, Ctrl-C during `apply --wait` (in a pseudo-terminal and without
one), `events --follow --operation` ending with the operation, exit codes, and an adapter's
address given where a coordinator's belongs. A coordinator in-process routes to a fake adapter
whose operations stay PENDING until cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import platform
import signal
import socket
import sys
from asyncio.subprocess import Process
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.client.credentials import TOKEN_ENV
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane_cli.main import main
from tests.coordinator.identities import ADMIN
from tests.coordinator.routing_harness import (
    Client,
    RunningFake,
    coordinator,
    fakes,
    make_settings,
    static,
)
from tests.kit.toy_adapter import eventually
from tests.meshplane_command import meshplane

_SYS_TGKILL = 234  # x86-64

_PROGRAM = "import sys; from meshplane_cli.main import main; sys.exit(main())"


class Setup:
    def __init__(self, client: Client, fake: RunningFake) -> None:
        self.client = client
        self.fake = fake

    @property
    def address(self) -> str:
        return self.client.coordinator.address

    async def start_operation(self, operation_id: str) -> None:
        await self.client.stub.ApplyOperation(
            cpb.ApplyOperationRequest(
                mesh="toy",
                request=apb.ApplyOperationRequest(operation_id=operation_id, operation="install"),
            ),
            timeout=10,
        )


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    # Commands, in this process and in child processes, authenticate as the test admin.
    monkeypatch.setenv(TOKEN_ENV, ADMIN.token)
    async with fakes(("toy", "a")) as (fake,):
        settings = make_settings(tmp_path, adapters=static(fake))
        async with coordinator(settings) as client:
            await client.wait_serving(fake.address)
            yield Setup(client, fake)


async def _cli(setup: Setup, *argv: str) -> tuple[int, str, str]:
    return await meshplane(*argv, "--coordinator", setup.address)


async def test_get_shows_the_operation_and_unknown_ids_exit_3(setup: Setup) -> None:
    await setup.start_operation("op-get")
    code, out, _ = await _cli(setup, "get", "op-get", "-o", "json")
    assert code == 0
    record = json.loads(out)["operation"]
    assert record["mesh"] == "toy"
    assert record["operation"]["state"] == "OPERATION_STATE_PENDING"
    code, out, _ = await _cli(setup, "get", "op-get")
    assert code == 0
    assert "state:        PENDING" in out and "mesh:         toy" in out

    code, _, err = await _cli(setup, "get", "no-such-op")
    assert code == 3
    assert "NOT_FOUND" in err


async def test_wait_gives_up_after_its_timeout_and_says_how_to_go_on(setup: Setup) -> None:
    await setup.start_operation("op-wait")
    code, _, err = await _cli(setup, "wait", "op-wait", "--timeout", "300ms")
    assert code == 4
    assert "no final state after 0.3s" in err
    assert "meshplane wait op-wait" in err
    code, _, err = await _cli(setup, "wait", "op-wait", "--timeout", "soon")
    assert code == 2  # argparse's usage error
    assert "not a duration: 'soon'" in err


async def test_cancel_stops_it_and_wait_then_reports_it_cancelled(setup: Setup) -> None:
    await setup.start_operation("op-cancel")
    code, out, _ = await _cli(setup, "cancel", "op-cancel", "-y")
    assert code == 0
    assert out.strip() == "operation op-cancel CANCELLED"
    assert setup.fake.fake.operations["op-cancel"].state == apb.OPERATION_STATE_CANCELLED

    code, _, err = await _cli(setup, "cancel", "op-cancel", "-y")
    assert code == 0
    assert "already ended (CANCELLED); nothing to cancel" in err

    code, _, err = await _cli(setup, "wait", "op-cancel", "--timeout", "10s")
    assert code == 1
    assert "operation op-cancel CANCELLED" in err


async def test_events_follow_for_one_operation_ends_when_it_ends(setup: Setup) -> None:
    await setup.start_operation("op-events")
    command = asyncio.create_task(
        _cli(setup, "events", "--follow", "--operation", "op-events"),
        name="events --follow",
    )
    await asyncio.sleep(0.5)
    assert not command.done()
    await setup.client.stub.CancelOperation(
        cpb.CancelOperationRequest(operation_id="op-events"), timeout=10
    )
    code, out, _ = await asyncio.wait_for(command, 30)
    assert code == 0
    assert "operation op-events cancelled" in out


async def test_an_adapter_address_is_named_as_one(setup: Setup) -> None:
    code, _, err = await meshplane("adapters", "--coordinator", setup.fake.address)
    assert code == 1
    assert f"{setup.fake.address} is a meshplane adapter (mesh 'toy'), not a coordinator" in err
    assert "Method not found" not in err


async def test_invalid_input_the_coordinator_refuses_exits_2(setup: Setup) -> None:
    code, _, err = await _cli(setup, "apply", "toy", "bad")
    assert code == 2
    assert "INVALID_ARGUMENT" in err


async def test_apply_timeout_takes_go_durations(setup: Setup) -> None:
    code, _, _ = await _cli(setup, "apply", "toy", "install", "--timeout", "1m30s")
    assert code == 0
    (request,) = setup.fake.fake.calls("ApplyOperation")
    assert request.timeout.seconds == 90


async def _apply_process(coordinator_address: str, *flags: str, **streams: Any) -> Process:
    """`meshplane apply toy install FLAGS` as its own process, with the given std streams."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _PROGRAM,
        "apply",
        "toy",
        "install",
        *flags,
        "--coordinator",
        coordinator_address,
        **streams,
    )


async def _apply_wait(setup: Setup, operation_id: str, **streams: Any) -> Process:
    """`meshplane apply toy install --wait` as its own process, with the given std streams."""
    return await _apply_process(setup.address, "--wait", "--operation-id", operation_id, **streams)


async def _read_until(master: int, wanted: str, seen: bytearray, within: float = 30.0) -> str:
    """Read the pseudo-terminal until ``wanted`` appears; everything read so far."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(within):
        while wanted not in seen.decode(errors="replace"):
            readable = asyncio.Event()
            loop.add_reader(master, readable.set)
            try:
                await readable.wait()
            finally:
                loop.remove_reader(master)
            seen.extend(os.read(master, 4096))
    return seen.decode(errors="replace")


async def test_ctrl_c_on_a_terminal_explains_and_a_second_one_offers_to_cancel(
    setup: Setup,
) -> None:
    master, slave = os.openpty()
    try:
        process = await _apply_wait(setup, "op-tty", stdin=slave, stdout=slave, stderr=slave)
    finally:
        os.close(slave)
    seen = bytearray()
    try:
        await _read_until(master, "accepted by", seen)
        await asyncio.sleep(0.3)  # the follower is watching events by now
        process.send_signal(signal.SIGINT)
        text = await _read_until(master, "within 3s to cancel it now", seen)
        assert "interrupted: operation op-tty keeps running on its adapter" in text
        assert "meshplane wait op-tty" in text and "meshplane cancel op-tty" in text
        process.send_signal(signal.SIGINT)
        await _read_until(master, "cancel operation op-tty? [y/N]", seen)
        os.write(master, b"y\n")
        text = await _read_until(master, "cancellation requested", seen)
        assert await asyncio.wait_for(process.wait(), 30) == 130
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    assert "Traceback" not in text
    assert setup.fake.fake.operations["op-tty"].state == apb.OPERATION_STATE_CANCELLED


async def test_ctrl_c_without_a_terminal_explains_and_leaves_it_running(setup: Setup) -> None:
    process = await _apply_wait(
        setup,
        "op-pipe",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert b"accepted by" in line
    await asyncio.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    text = err.decode()
    assert "interrupted: operation op-pipe keeps running" in text
    assert "[y/N]" not in text and "Traceback" not in text
    assert setup.fake.fake.operations["op-pipe"].state == apb.OPERATION_STATE_PENDING


async def _piped_apply(coordinator_address: str, *flags: str) -> Process:
    """`meshplane apply toy install` as its own process, without a terminal."""
    return await _apply_process(
        coordinator_address,
        *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _applies_received(setup: Setup, count: int) -> list[Any]:
    """The ApplyOperation requests the fake adapter received, once there are ``count``."""
    await eventually(lambda: len(setup.fake.fake.calls("ApplyOperation")) >= count, within=30)
    return setup.fake.fake.calls("ApplyOperation")


async def test_ctrl_c_before_the_answer_names_the_operation_and_how_to_resend_it(
    setup: Setup,
) -> None:
    setup.fake.fake.applies_held = held = asyncio.Event()
    process = await _piped_apply(setup.address)
    try:
        (sent,) = await _applies_received(setup, 1)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    text = err.decode()
    operation_id = sent.operation_id  # the command named it before sending
    assert operation_id and operation_id in text
    assert "interrupted before the coordinator answered" in text
    assert f"meshplane get {operation_id}" in text
    assert f"--operation-id {operation_id}" in text
    assert "Traceback" not in text

    held.set()  # re-sending the id runs the operation, once
    code, out, _ = await _cli(setup, "apply", "toy", "install", "--operation-id", operation_id)
    assert code == 0 and operation_id in out
    code, out, _ = await _cli(setup, "get", operation_id, "-o", "json")
    assert code == 0 and json.loads(out)["operation"]["operation"]["operation_id"] == operation_id
    assert list(setup.fake.fake.operations) == [operation_id]


def _interrupt_another_thread(pid: int) -> None:
    """Ctrl-C delivered to one of the process's threads other than the main one (gRPC's), as
    the kernel may do: tgkill(2), which Python's os module lacks."""
    threads = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid)
    assert threads, "the command runs gRPC's threads beside its main one"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_SYS_TGKILL, pid, threads[0], signal.SIGINT) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.skipif(
    platform.machine() != "x86_64" or sys.platform != "linux", reason="tgkill number is x86-64's"
)
async def test_ctrl_c_reaching_another_thread_still_interrupts_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, ADMIN.token)
    async with fakes(("toy", "a")) as (fake,):
        # The coordinator waits up to a minute for the adapter's answer: before, Ctrl-C went
        # unseen until then, and the command ended with the timeout (exit 4).
        settings = make_settings(tmp_path, adapters=static(fake), call_timeout_seconds=60.0)
        async with coordinator(settings) as client:
            await client.wait_serving(fake.address)
            fake.fake.applies_held = held = asyncio.Event()
            process = await _piped_apply(client.coordinator.address, "--call-timeout", "90s")
            try:
                await eventually(lambda: bool(fake.fake.calls("ApplyOperation")), within=30)
                _interrupt_another_thread(process.pid)
                _, err = await asyncio.wait_for(process.communicate(), 20)
            finally:
                held.set()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    assert process.returncode == 130, err.decode()
    assert "interrupted before the coordinator answered" in err.decode()


async def test_an_answer_past_the_call_timeout_names_the_operation(setup: Setup) -> None:
    setup.fake.fake.applies_held = held = asyncio.Event()
    try:
        code, _, err = await _cli(setup, "apply", "toy", "install", "--call-timeout", "1")
        (sent,) = await _applies_received(setup, 1)
    finally:
        held.set()
    assert code == 4
    assert f"no answer within --call-timeout 1s: operation {sent.operation_id} may" in err
    assert f"meshplane get {sent.operation_id}" in err


async def test_version_names_client_coordinator_and_each_adapter(setup: Setup) -> None:
    code, out, _ = await _cli(setup, "version")
    assert code == 0
    assert out.splitlines() == [
        "client:       0.1.0",
        "coordinator:  0.1.0",
        f"adapter:      toy {setup.fake.address} 1.0.0+a",
    ]
    code, out, _ = await _cli(setup, "version", "-o", "json")
    assert json.loads(out)["adapters"] == [
        {"mesh": "toy", "address": setup.fake.address, "version": "1.0.0+a"}
    ]


async def test_near_misses_get_a_suggestion(
    setup: Setup, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = await _cli(setup, "apply", "tyo", "install")
    assert code == 3
    assert "unknown mesh 'tyo'" in err and "did you mean 'toy'?" in err
    assert main(["aply", "toy", "install"]) == 2
    assert "unknown command 'aply'; did you mean 'apply'?" in capsys.readouterr().err


async def _delete_in_a_terminal(setup: Setup, answer: bytes) -> tuple[int, str]:
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROGRAM, "apply", "toy", "install", "--delete",
            "--coordinator", setup.address, stdin=slave, stdout=slave, stderr=slave,
        )  # fmt: skip
    finally:
        os.close(slave)
    seen = bytearray()
    try:
        await _read_until(master, "[y/N]", seen)
        os.write(master, answer)
        code = await asyncio.wait_for(process.wait(), 30)
        await asyncio.sleep(0.1)
        with contextlib.suppress(OSError):
            seen.extend(os.read(master, 65536))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)
    return code, seen.decode(errors="replace")


async def test_delete_asks_on_a_terminal_and_not_in_scripts(setup: Setup) -> None:
    code, text = await _delete_in_a_terminal(setup, b"n\n")
    assert code == 130 and "delete what toy install created?" in text and "not deleted" in text
    assert setup.fake.fake.calls("ApplyOperation") == []
    code, text = await _delete_in_a_terminal(setup, b"y\n")
    assert code == 0, text
    (request,) = setup.fake.fake.calls("ApplyOperation")
    assert request.delete
    # not a terminal (this test's captured stdin): no question
    code, _, err = await _cli(setup, "apply", "toy", "install", "--delete")
    assert code == 0 and "[y/N]" not in err


async def test_contexts_name_a_coordinator_and_flags_and_variables_win(
    setup: Setup,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    isolated_client_config: Path,
) -> None:
    token_file = tmp_path / "admin-token"
    token_file.write_text(ADMIN.token)
    monkeypatch.delenv(TOKEN_ENV)
    assert main(["config", "set-context", "lab", "--coordinator", setup.address,
                 "--token-file", str(token_file)]) == 0  # fmt: skip
    config = isolated_client_config / "config.yaml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert ADMIN.token not in config.read_text()  # paths only, never tokens
    capsys.readouterr()
    assert main(["config", "get-contexts"]) == 0
    assert f"*        lab  {setup.address}" in capsys.readouterr().out

    # no --coordinator, no token flag: the current context supplies both
    code, out, _ = await meshplane("adapters", "-o", "name")
    assert code == 0
    assert f"adapter/toy/{setup.fake.address}" in out

    # a variable outranks the context (nothing listens there: unavailable)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv("MESHPLANE_COORDINATOR", f"127.0.0.1:{closed}")
    assert (await meshplane("adapters", "--call-timeout", "2s"))[0] == 4
    monkeypatch.delenv("MESHPLANE_COORDINATOR")

    code, _, err = await meshplane("adapters", "--context", "nope")
    assert code == 2
    assert "no context 'nope'" in err
