"""The request guard's handling of a handler's own failures, with a stand-in servicer context.

A real client cannot time its departure to land inside the server's sending of an abort status,
so these drive the guard's wrapper directly with a context that fails the way grpc's does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc
import grpc.aio
import pytest

from meshplane.adapter.v1 import adapter_pb2 as pb
from serving.guarded_handlers import RequestGuard

METHOD = "/meshplane.adapter.v1.MeshAdapterService/StreamEvents"


class _Details:
    method = METHOD


class CallEndedContext:
    """grpc's servicer context when the client left during abort: the status cannot be sent
    (grpc raises ExecuteBatchError), and any later abort is refused ("Abort already called!")."""

    def __init__(self) -> None:
        self.aborts: list[tuple[Any, str]] = []

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        self.aborts.append((code, details))
        if len(self.aborts) > 1:
            raise RuntimeError("Abort already called!")
        raise ConnectionResetError("the call ended before its status was sent")


async def guarded_stream(behaviour: Any) -> Any:
    async def continuation(details: Any) -> Any:
        return grpc.unary_stream_rpc_method_handler(
            behaviour, request_deserializer=pb.StreamEventsRequest.FromString
        )

    handler = await RequestGuard().intercept_service(continuation, _Details())
    return handler.unary_stream


async def test_a_call_that_ends_while_its_handler_aborts_is_not_aborted_again() -> None:
    async def exhausted(request: Any, context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "resume with after_sequence=0")
        yield pb.StreamEventsResponse()

    context = CallEndedContext()
    stream = await guarded_stream(exhausted)
    raw = pb.StreamEventsRequest(after_sequence=0).SerializeToString()
    with pytest.raises(BaseException) as ended:
        async for _ in stream(raw, context):
            pass
    # Before: the guard took the failed send for a bug and aborted a second time (INTERNAL),
    # which grpc refuses with "Abort already called!".
    assert context.aborts == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "resume with after_sequence=0")]
    assert ended.type.__name__ == "CancelledError"


async def test_a_handler_bug_is_still_answered_internal_once() -> None:
    async def broken(request: Any, context: Any) -> AsyncIterator[pb.StreamEventsResponse]:
        raise KeyError("a bug")
        yield pb.StreamEventsResponse()

    context = CallEndedContext()
    stream = await guarded_stream(broken)
    with pytest.raises(ConnectionResetError):
        async for _ in stream(b"", context):
            pass
    assert [code for code, _ in context.aborts] == [grpc.StatusCode.INTERNAL]
    assert "incident" in context.aborts[0][1]
