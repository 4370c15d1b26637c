"""The parts `meshplane up` is made of, on their own: ports, child command lines, the summary,
and start-up unwinding what it started when a later step fails."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import socket
import sys
from pathlib import Path

import pytest

from coordinator.sandbox.child_arguments import (
    adapter_arguments,
    cluster_command,
    coordinator_arguments,
)
from coordinator.sandbox.children import SandboxError
from coordinator.sandbox.data_dir_lock import DataDirLock
from coordinator.sandbox.ports import PortPlan, candidate_meshes, port_base_fits
from coordinator.sandbox.settings import SandboxSettings
from coordinator.sandbox.summary import Listening, summary
from coordinator.sandbox.up import Sandbox
from tests.coordinator.test_sandbox_supervision import _free_port_block


def _flag(args: list[str] | tuple[str, ...], name: str) -> str:
    return args[list(args).index(name) + 1]


def test_ports_keep_their_place_whichever_meshes_are_asked_for() -> None:
    registered = candidate_meshes()
    first, last = registered[0], registered[-1]
    alone = PortPlan(base=20000, meshes=(last,))
    every = PortPlan(base=20000, meshes=registered)
    assert (alone.coordinator, alone.kubesim) == (20000, 20001)
    assert alone.adapter(last) == every.adapter(last) == 20002 + len(registered) - 1
    assert every.adapter(first) == 20002
    # a mesh that is not registered comes after every registered one
    assert PortPlan(base=20000, meshes=("nomesh",)).adapter("nomesh") == 20002 + len(registered)
    assert port_base_fits(20000) and not port_base_fits(0)
    assert not port_base_fits(65535 - len(registered))


def test_adapters_may_name_only_the_sandboxs_own_cluster(tmp_path: Path) -> None:
    settings = SandboxSettings(data_dir=tmp_path, port_base=20000, meshes=("istio",))
    kubeconfig = tmp_path / "kubesim" / "kubeconfig"
    own = adapter_arguments(
        settings, "istio", kubeconfig=kubeconfig, kubernetes_url="https://127.0.0.1:20001"
    )
    assert _flag(own, "--allowed-cluster-servers") == "127.0.0.1:20001"
    assert "--allow-request-kubeconfigs" in own
    assert _flag(own, "--port") == str(settings.adapter_port("istio"))
    assert _flag(own, "--coordinator-token-file") == str(tmp_path / "link-token")
    given = adapter_arguments(settings, "istio", kubeconfig=kubeconfig, kubernetes_url="")
    assert "--allow-request-kubeconfigs" not in given
    assert "--allowed-cluster-servers" not in given


def test_the_coordinator_is_given_every_started_adapter(tmp_path: Path) -> None:
    settings = SandboxSettings(data_dir=tmp_path, port_base=20000)
    args = coordinator_arguments(
        settings,
        adapters={"istio": "127.0.0.1:20002", "linkerd": "127.0.0.1:20003"},
        token_file=tmp_path / "auth" / "tokens.csv",
    )
    adapters = [args[i + 1] for i, arg in enumerate(args) if arg == "--adapter"]
    assert adapters == ["istio=127.0.0.1:20002", "linkerd=127.0.0.1:20003"]
    assert _flag(args, "--port") == "20000"
    assert _flag(args, "--adapter-token-file") == str(tmp_path / "link-token")


def test_the_cluster_is_kubesim_unless_real_is_asked_for(tmp_path: Path) -> None:
    sim = cluster_command(SandboxSettings(data_dir=tmp_path, port_base=20000))
    assert sim.name == "kubesim" and sim.args[0] == "kubesim"
    assert sim.kubeconfig == tmp_path / "kubesim" / "kubeconfig"
    assert sim.url("kubesim serving at https://127.0.0.1:20001") == "https://127.0.0.1:20001"
    assert sim.url("something else") is None
    real = cluster_command(
        SandboxSettings(data_dir=tmp_path, port_base=20000, kube="real", allow_host_network=True)
    )
    assert real.args[:2] == ("kube", "up") and "--allow-host-network" in real.args
    assert _flag(real.args, "--port") == "20001"
    assert real.within == SandboxSettings().real_kube_start_timeout_seconds
    assert real.url("kube-apiserver serving at https://127.0.0.1:20001") is not None


def test_the_summary_lists_every_part_and_a_first_command(tmp_path: Path) -> None:
    listening = Listening(
        kube="sim",
        kubernetes_url="https://127.0.0.1:20001",
        kubeconfig=tmp_path / "kubeconfig",
        adapters={"istio": "127.0.0.1:20002"},
        skipped={"nomesh": "not available"},
        coordinator_address="127.0.0.1:20000",
        data_dir=tmp_path,
        admin_token_file=tmp_path / "auth" / "admin.token",
        logs=tmp_path / "logs",
    )
    lines = summary(listening).splitlines()
    assert lines[0] == "meshplane is up"
    assert lines[1].split() == [
        "kubernetes",
        "https://127.0.0.1:20001",
        "kubesim,",
        str(tmp_path / "kubeconfig"),
    ]
    assert "nomesh adapter" in lines[3] and "skipped: not available" in lines[3]
    assert lines[-2] == "try:  meshplane ops istio --coordinator 127.0.0.1:20000"
    at_default = summary(dataclasses.replace(listening, coordinator_address="127.0.0.1:10100"))
    assert "try:  meshplane ops istio\n" in at_default


async def test_a_failed_step_stops_what_the_earlier_steps_started(tmp_path: Path) -> None:
    """kubesim starts, no adapter does: kubesim is stopped and the data directory is free."""
    settings = SandboxSettings(
        data_dir=tmp_path, port_base=_free_port_block(3), meshes=("nomesh",), stop_grace_seconds=5
    )
    sandbox = Sandbox(settings)
    with pytest.raises(SandboxError, match="no adapter started"):
        await sandbox.start()
    assert sandbox.children == []
    assert "kubesim serving at" in (tmp_path / "logs" / "kubesim.out").read_text()
    assert sandbox.skipped == {
        "nomesh": f"not available (see {tmp_path / 'logs' / 'adapter-nomesh.log'})"
    }
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", settings.kubesim_port)) != 0
    lock = DataDirLock(tmp_path)
    lock.acquire()  # released by the unwinding: no DataDirLocked
    lock.release()
    await sandbox.stop()  # nothing left to stop: a second stop is harmless


async def test_ctrl_c_while_starting_stops_what_started_and_exits_130(tmp_path: Path) -> None:
    base = _free_port_block(3)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "meshplane_cli.main", "up", "--data-dir", str(tmp_path),
        "--mesh", "istio", "--port-base", str(base), "--log-level", "info",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(60):
            # kubesim is up and the adapter was just launched: it needs seconds to serve
            while b"adapter-istio" not in (line := await process.stderr.readline()):
                assert line, "up exited before it started the adapter"
        process.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 130
    assert b"meshplane is up" not in out
    for port in (base, base + 1, PortPlan(base=base, meshes=("istio",)).adapter("istio")):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still served"
    lock = DataDirLock(tmp_path)
    lock.acquire()
    lock.release()
