"""kubesim + adapter subprocesses + an in-process coordinator, and a WatchEvents client.

Adapters run as `meshplane adapter MESH` with a state dir and a fixed port once started, so a
test can kill one and bring it back at the same address (the coordinator's static entry stays
valid). The coordinator is built with `build_coordinator`, so a test can stop it and start
another on the same data dir or PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from adapters.kit.testing import MESHPLANE, AdapterProcess
from coordinator.server.assembly import Coordinator, build_coordinator
from coordinator.server.settings import CoordinatorSettings, StaticAdapter
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from tests.coordinator.identities import channel_as, write_token_file

TERMINAL = frozenset(
    {
        apb.OPERATION_STATE_SUCCEEDED,
        apb.OPERATION_STATE_FAILED,
        apb.OPERATION_STATE_CANCELLED,
        apb.OPERATION_STATE_INTERRUPTED,
    }
)


def free_port_block(size: int) -> int:
    """The first of ``size`` consecutive free loopback ports (probed; a race is unlikely)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + size > 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {size} free ports")


class Adapter:
    """One adapter subprocess, restartable at the same address on the same state dir."""

    def __init__(self, mesh: str, args: list[str], log: Path) -> None:
        self.mesh = mesh
        self.args = args
        self.log = log
        self.process: AdapterProcess | None = None
        self.address = ""

    async def start(self) -> str:
        """Start (at the previous port after the first start) and return the address."""
        args = list(self.args)
        port = self.address.rsplit(":", 1)[1] if self.address else "0"
        args += ["--port", port]
        process = AdapterProcess(args, self.log, command=[str(MESHPLANE), "adapter", self.mesh])
        self.process = await asyncio.to_thread(process.start)
        self.address = self.process.address
        return self.address

    async def kill(self) -> None:
        """SIGKILL: no chance to record anything."""
        if self.process is not None:
            await asyncio.to_thread(self.process.kill)

    async def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None:
            await asyncio.to_thread(self.process.stop)
            self.process = None

    async def replay(self) -> list[apb.Event]:
        """The adapter's own event log, from the start, as StreamEvents replays it."""
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = apb_grpc.MeshAdapterServiceStub(channel)
            info = await stub.GetInfo(apb.GetInfoRequest(), timeout=5)
            events: list[apb.Event] = []
            call = stub.StreamEvents(apb.StreamEventsRequest(after_sequence=0))
            try:
                while True:
                    try:
                        reply = await asyncio.wait_for(call.read(), 1.0)
                    except TimeoutError:
                        break  # replay done: the stream is now waiting for live events
                    if reply is grpc.aio.EOF:
                        break
                    events.append(reply.event)
            finally:
                call.cancel()
            assert all(e.event_stream_id == info.event_stream_id for e in events)
            return events


class CoordinatorUnderTest:
    """A coordinator built in-process; restartable on the same store."""

    def __init__(self, settings: CoordinatorSettings) -> None:
        self.settings = settings
        self.coordinator: Coordinator | None = None
        self.channel: Any = None
        self.stub: Any = None

    async def start(self) -> str:
        self.coordinator = build_coordinator(self.settings)
        address = await self.coordinator.start()
        self.channel = channel_as(address)
        self.stub = cpb_grpc.CoordinatorServiceStub(self.channel)
        return address

    async def stop(self) -> None:
        if self.channel is not None:
            await self.channel.close()
            self.channel = None
        if self.coordinator is not None:
            await self.coordinator.stop(0.5)
            self.coordinator = None

    @property
    def address(self) -> str:
        assert self.coordinator is not None
        return self.coordinator.address

    async def wait_serving(self, mesh: str, within: float = 20.0) -> None:
        """Until a replica of ``mesh`` is SERVING with its identity known."""
        async with asyncio.timeout(within):
            while True:
                listing = await self.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
                for adapter in listing.adapters:
                    if adapter.mesh == mesh and any(
                        r.state == cpb.REPLICA_STATE_SERVING and r.event_stream_id
                        for r in adapter.replicas
                    ):
                        return
                await asyncio.sleep(0.05)

    async def apply(self, mesh: str, request: apb.ApplyOperationRequest) -> Any:
        """ApplyOperation through the coordinator, retried while no replica is in rotation."""
        async with asyncio.timeout(30):
            while True:
                try:
                    return await self.stub.ApplyOperation(
                        cpb.ApplyOperationRequest(mesh=mesh, request=request), timeout=10
                    )
                except grpc.aio.AioRpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                await asyncio.sleep(0.1)


def coordinator_settings(
    data_dir: Path, adapters: list[Adapter], *, store: str = ""
) -> CoordinatorSettings:
    """Port 0, the given adapters as static replicas, quick health backoff, the test callers'
    token file (``tests.coordinator.identities``; the stub calls as the admin)."""
    return CoordinatorSettings(
        token_auth_file=write_token_file(data_dir / "auth"),
        host="127.0.0.1",
        port=0,
        adapters=tuple(StaticAdapter(mesh=a.mesh, address=a.address) for a in adapters),
        data_dir=data_dir,
        store=store,
        health_backoff_initial_seconds=0.05,
        health_backoff_max_seconds=0.5,
        shutdown_grace_seconds=1.0,
    )


class Watcher:
    """A WatchEvents client in a background task: what it received, and its cursor."""

    def __init__(self, stub: Any, request: cpb.WatchEventsRequest) -> None:
        self.received: list[cpb.WatchEventsResponse] = []
        self._stub = stub
        self._request = request
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def cursor(self) -> int:
        return self.received[-1].cursor if self.received else self._request.after_cursor

    def start(self) -> Watcher:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="e2e-watch")
        return self

    async def _follow(self) -> None:
        try:
            async for reply in self._stub.WatchEvents(self._request):
                self.received.append(reply)
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            self.error = exc
            self._changed.set()

    async def wait_for(
        self, match: Callable[[cpb.WatchEventsResponse], bool], within: float = 60.0
    ) -> cpb.WatchEventsResponse:
        """The first received event matching ``match``."""
        async with asyncio.timeout(within):
            while True:
                for reply in self.received:
                    if match(reply):
                        return reply
                if self.error is not None:
                    raise AssertionError(f"watch ended: {self.error}")
                self._changed.clear()
                await self._changed.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task


def finished(operation_id: str, state: int) -> Callable[[cpb.WatchEventsResponse], bool]:
    """Matches the event that moved ``operation_id`` into ``state``."""
    return lambda r: r.event.operation_id == operation_id and r.event.operation_state == state
