"""The event stream pump on its own: bounded batches, and which failure wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import grpc.aio
import pytest

from coordinator.server.follower_state import FollowerState
from coordinator.server.stream_failures import ReadFailed
from coordinator.server.stream_pump import StreamPump
from meshplane.adapter.v1 import adapter_pb2 as pb


@dataclass(frozen=True)
class _Response:
    event: pb.Event


def _error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


async def _stream(count: int, then: Exception | None = None) -> AsyncIterator[_Response]:
    for sequence in range(1, count + 1):
        yield _Response(pb.Event(sequence=sequence))
    if then is not None:
        raise then


class _Writer:
    def __init__(self, *, fail_at: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self._fail_at = fail_at

    async def __call__(self, batch: list[pb.Event]) -> None:
        if self._fail_at is not None and len(self.batches) == self._fail_at:
            raise RuntimeError("the store is away")
        self.batches.append([event.sequence for event in batch])
        await asyncio.sleep(0)


def _pump(writer: _Writer, *, batch_size: int = 3, buffer_size: int = 100) -> StreamPump:
    return StreamPump(
        FollowerState("127.0.0.1:1", "istio"),
        writer,
        buffer_size=buffer_size,
        batch_size=batch_size,
    )


async def test_every_event_is_written_once_in_order_in_bounded_batches() -> None:
    writer = _Writer()
    await _pump(writer, batch_size=3, buffer_size=4).run(_stream(10))
    assert [s for batch in writer.batches for s in batch] == list(range(1, 11))
    assert all(1 <= len(batch) <= 3 for batch in writer.batches)


async def test_out_of_range_is_raised_as_it_is_and_other_read_errors_as_read_failed() -> None:
    writer = _Writer()
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _pump(writer).run(_stream(2, _error(grpc.StatusCode.OUT_OF_RANGE)))
    assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert [s for batch in writer.batches for s in batch] == [1, 2]

    with pytest.raises(ReadFailed) as failed:
        await _pump(_Writer()).run(_stream(2, _error(grpc.StatusCode.INTERNAL)))
    assert isinstance(failed.value.cause, grpc.aio.AioRpcError)


async def test_a_store_failure_wins_and_stops_reading() -> None:
    writer = _Writer(fail_at=1)
    with pytest.raises(RuntimeError, match="the store is away"):
        # a buffer of 2: the reader blocks on a full buffer until the writer's failure stops it
        await _pump(writer, batch_size=1, buffer_size=2).run(_stream(1000))
    assert writer.batches == [[1]]
