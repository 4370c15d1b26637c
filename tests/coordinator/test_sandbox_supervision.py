"""`meshplane up` keeps its children running: a crashed child comes back, a child that keeps
crashing ends supervision, and a second `up` on the same data directory is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import grpc.aio
import pytest

from coordinator.sandbox.children import Child
from coordinator.sandbox.settings import SandboxSettings
from coordinator.sandbox.up import Sandbox
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from tests.meshplane_command import meshplane


def _free_port_block(size: int) -> int:
    """A base port with ``size`` consecutive free loopback ports (coordinator, kubesim, ...)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size > 65535:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + size):
                    held = stack.enter_context(socket.socket())
                    held.bind(("127.0.0.1", port))
            except OSError:
                continue
        return base
    raise RuntimeError("no block of free ports")


@contextlib.asynccontextmanager
async def _running(tmp_path: Path, **changes: object) -> AsyncIterator[Sandbox]:
    settings = SandboxSettings(
        data_dir=tmp_path / "data",
        port_base=_free_port_block(3),
        meshes=("istio",),
        stop_grace_seconds=5,
        restart_backoff_seconds=0.05,
        **changes,  # type: ignore[arg-type]
    )
    sandbox = Sandbox(settings)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()


def _adapter(sandbox: Sandbox) -> Child:
    return next(child for child in sandbox.children if child.name == "adapter-istio")


async def _replica_states(sandbox: Sandbox) -> list[str]:
    """What `meshplane adapters -o json` shows for the istio replicas."""
    argv = ["adapters", "-o", "json", "--coordinator", sandbox.coordinator_address]
    code, out, err = await meshplane(*argv)
    assert code == 0, err
    line = next(text for text in out.splitlines() if text.startswith('{"adapters"'))
    listed = json.loads(line)
    return [r["state"] for a in listed["adapters"] if a["mesh"] == "istio" for r in a["replicas"]]


async def _eventually(check: Callable[[], Awaitable[bool]], *, within: float = 60) -> None:
    async with asyncio.timeout(within):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


async def _request_kubeconfigs_name_only_the_sandboxs_kubesim(sandbox: Sandbox) -> None:
    assert sandbox.kubeconfig is not None
    text = sandbox.kubeconfig.read_text()
    port = sandbox.kubernetes_url.rsplit(":", 1)[1]
    # the sandbox's adapters serve only a caller with its link token
    link = (("authorization", f"Bearer {sandbox.link_token_file.read_text().strip()}"),)
    async with grpc.aio.insecure_channel(sandbox.adapters["istio"]) as channel:
        stub = apb_grpc.MeshAdapterServiceStub(channel)
        ask = apb.GetMeshStatusRequest(cluster=apb.Cluster(name="sim", kubeconfig=text))
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await stub.GetMeshStatus(ask, timeout=30)
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        status = await stub.GetMeshStatus(ask, timeout=30, metadata=link)
        assert status.cluster == "sim" and not status.installed
        elsewhere = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{int(port) + 1}")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetMeshStatus(
                apb.GetMeshStatusRequest(cluster=apb.Cluster(name="x", kubeconfig=elsewhere)),
                timeout=30,
                metadata=link,
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"127.0.0.1:{int(port) + 1}" in (refused.value.details() or "")


async def test_a_killed_adapter_comes_back_until_it_exits_too_often(tmp_path: Path) -> None:
    """One sandbox for every check: starting one takes seconds."""
    async with _running(tmp_path, max_restarts=1) as sandbox:
        supervising = asyncio.ensure_future(sandbox.supervise())
        try:

            async def serving() -> bool:
                return await _replica_states(sandbox) == ["REPLICA_STATE_SERVING"]

            # the coordinator serves as soon as it listens; the adapter proves its link first
            await _eventually(serving)
            await _request_kubeconfigs_name_only_the_sandboxs_kubesim(sandbox)
            adapter = _adapter(sandbox)
            killed = adapter.process.pid
            adapter.process.kill()

            async def restarted() -> bool:
                return adapter.process.pid != killed and adapter.process.returncode is None

            await _eventually(restarted)
            await _eventually(serving)
            assert not supervising.done() and len(adapter.restarts) == 1

            # The data dir is taken: a second `up` on it refuses before starting anything.
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "meshplane_cli.main",
                "up",
                "--data-dir",
                str(sandbox.settings.data_dir),
                "--mesh",
                "istio",
                "--port-base",
                str(_free_port_block(3)),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 1, out
            message = err.decode()
            assert str(sandbox.settings.data_dir) in message
            assert f"pid {os.getpid()}" in message
            assert adapter.process.returncode is None and not supervising.done()

            # A second exit within the window (max_restarts=1): supervision gives up on it.
            adapter.process.kill()
            gave_up = await asyncio.wait_for(supervising, 60)
            assert gave_up is adapter
        finally:
            supervising.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervising
