"""Follow an adapter's StreamEvents in the background and wait for events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import grpc

from adapters.kit.testing.client import TERMINAL, AdapterClient
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = ["EventCollector"]


class EventCollector:
    """Follows StreamEvents from a sequence into a list, in a named background task."""

    def __init__(self, client: AdapterClient, after_sequence: int = 0) -> None:
        self.events: list[pb.Event] = []
        self._client = client
        self._after = after_sequence
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> EventCollector:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="e2e-events")
        return self

    async def _follow(self) -> None:
        stream = self._client.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=self._after))
        try:
            async for reply in stream:
                self.events.append(reply.event)
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                raise

    async def wait_for(self, match: Callable[[pb.Event], bool], within: float = 60.0) -> pb.Event:
        """The first collected event matching ``match`` (waits for it to arrive)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def settled(
        self,
        operation_id: str,
        states: frozenset[int] = TERMINAL,
        within: float = 30.0,
    ) -> list[pb.Event]:
        """The operation's events once an event reporting one of ``states`` has arrived."""
        await self.wait_for(
            lambda e: e.operation_id == operation_id and e.operation_state in states, within
        )
        return self.of(operation_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task

    def of(self, operation_id: str) -> list[pb.Event]:
        return [e for e in self.events if e.operation_id == operation_id]
