"""One adapter event stream read into a bounded buffer while a writer stores it in batches.

Reading pauses when the buffer is full, so a slow store slows the stream rather than memory
growing. The first failure wins: the writer's (the store), else the reader's; OUT_OF_RANGE from
the stream is raised as it is (the follower resumes from 0 with a gap), any other read error as
`ReadFailed`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from coordinator.server.follower_state import FollowerState
from coordinator.server.stream_failures import ReadFailed
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = ["StreamPump"]

BatchWriter = Callable[[list[pb.Event]], Awaitable[None]]


class StreamPump:
    """Moves one ``StreamEvents`` call's events to a batch writer."""

    def __init__(
        self,
        follower: FollowerState,
        write: BatchWriter,
        *,
        buffer_size: int,
        batch_size: int,
    ) -> None:
        self._follower = follower
        self._write = write
        self._batch_size = batch_size
        self._buffer: asyncio.Queue[pb.Event | None] = asyncio.Queue(buffer_size)
        self._failures: list[Exception] = []

    async def run(self, call: Any) -> None:
        """Until the stream ends (returns) or reading or writing fails (raises)."""
        address = self._follower.address
        async with asyncio.TaskGroup() as group:
            reader = group.create_task(self._read(call), name=f"event-hub:read:{address}")
            group.create_task(self._drain(reader), name=f"event-hub:write:{address}")
        if self._failures:
            raise self._failures[0]

    async def _read(self, call: Any) -> None:
        try:
            async for response in call:
                await self._buffer.put(response.event)
                self._follower.buffered = self._buffer.qsize()
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                self._failures.append(exc)  # the follower decides: resume from 0, with a gap
            else:
                self._failures.append(ReadFailed(exc))
        except Exception as exc:
            self._failures.append(ReadFailed(exc))
        await self._buffer.put(None)

    async def _drain(self, reader: asyncio.Task[None]) -> None:
        try:
            ended = False
            while not ended:
                batch, ended = await self._next_batch()
                self._follower.buffered = self._buffer.qsize()
                if batch:
                    await self._write(batch)
        except Exception as exc:
            self._failures.insert(0, exc)
            reader.cancel()

    async def _next_batch(self) -> tuple[list[pb.Event], bool]:
        """Up to ``batch_size`` buffered events (waiting for one); True once the stream ended."""
        batch: list[pb.Event] = []
        item = await self._buffer.get()
        while item is not None:
            batch.append(item)
            if len(batch) >= self._batch_size or self._buffer.empty():
                break
            item = self._buffer.get_nowait()
        return batch, item is None
