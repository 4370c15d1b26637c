"""The guard in front of every RPC a `GrpcServer` serves (its outermost interceptor).

Before a handler sees a request, the request is checked against `serving.request_bounds`
(INVALID_ARGUMENT naming the field path and the limit). While it runs, the status details it
sets are capped at `MAX_DETAILS` characters, so an error never carries megabytes of echoed
input back. An exception it lets escape is logged with its traceback and answered INTERNAL
with a short message, instead of UNKNOWN with Python text.

Handlers that receive raw bytes (the coordinator's passthrough) are checked too: the bytes are
parsed as the method's request type from the descriptor pool.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import grpc.aio
import structlog
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import Message

from serving.request_bounds import RequestBounds, request_bounds

__all__ = ["MAX_DETAILS", "RequestGuard", "capped"]

_log = structlog.get_logger(__name__)

MAX_DETAILS = 1024
"""Longest status message a handler may answer with; longer ones are cut with a marker."""


def capped(details: str | None) -> str | None:
    """``details`` cut to `MAX_DETAILS` characters (with a marker saying so)."""
    if details is None or len(details) <= MAX_DETAILS:
        return details
    return details[: MAX_DETAILS - 40] + f"... [{len(details)} characters, cut]"


class _CappedContext:
    """The servicer context a handler sees: the real one, with status details capped."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.abort_started = False
        """True once the handler called ``abort``: a failure after that is the call ending
        under us (the client left while the status was being sent), never a second status."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        """``context.abort`` with the details capped."""
        self.abort_started = True
        await self._context.abort(code, capped(details) or "", trailing_metadata)
        raise AssertionError("context.abort returned")

    def set_details(self, details: str) -> None:
        """``context.set_details`` with the details capped."""
        self._context.set_details(capped(details))


async def _internal(context: Any, method: str, error: Exception) -> NoReturn:
    incident = uuid.uuid4().hex[:12]
    _log.error(
        "grpc.handler_failed",
        method=method,
        incident=incident,
        error_type=type(error).__name__,
        exc_info=error,
    )
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"the server failed on this request (incident {incident} in its log); it is a bug, "
        "please report it",
    )
    raise AssertionError("context.abort returned")


async def _failed(
    context: Any, handler_context: _CappedContext, method: str, error: Exception
) -> NoReturn:
    """A handler's escaped exception: INTERNAL, unless its own abort was under way (then the
    call is already over: log it and end the handler as cancelled)."""
    if not handler_context.abort_started:
        await _internal(context, method, error)
    _log.info("grpc.call_ended_during_abort", method=method, error_type=type(error).__name__)
    raise asyncio.CancelledError from error


class RequestGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """The outermost interceptor of a server: bounds, capped details, no UNKNOWN.

    Outermost, so that the requests other interceptors (authentication, authorization) read
    are already decoded and bounded, and their refusals are capped too. A method's checker is
    built once; the wrapper around whatever handler the inner interceptors return, per call.
    """

    def __init__(self, bounds: RequestBounds = request_bounds) -> None:
        self._bounds = bounds
        self._checkers: dict[tuple[str, Any], _Check] = {}

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        """The handler the rest of the server chose for this call, guarded."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._guard(str(handler_call_details.method), handler)

    def _guard(self, method: str, handler: Any) -> Any:
        if handler.request_streaming:
            return handler  # no client-streaming RPC in our contracts; nothing to check up front
        key = (method, handler.request_deserializer)
        check = self._checkers.get(key)
        if check is None:
            check = self._checkers[key] = self._checker(method, handler.request_deserializer)
        # The guard decodes the request itself: undecodable bytes become INVALID_ARGUMENT
        # instead of the server's INTERNAL "Exception deserializing request".
        if handler.response_streaming:
            return handler._replace(
                request_deserializer=None,
                unary_stream=_streaming(method, handler.unary_stream, check),
            )
        return handler._replace(
            request_deserializer=None, unary_unary=_unary(method, handler.unary_unary, check)
        )

    def _checker(self, method: str, deserializer: Any) -> _Check:
        """``check(raw) -> (request, problem)``: the request as the handler expects it (decoded
        by its own deserializer; raw bytes for a raw handler), and the first problem or None."""
        bounds = self._bounds
        message_type = method.rsplit("/", 1)[-1]
        parse = _raw_parser(method)

        def check(raw: Any) -> tuple[Any, str | None]:
            try:
                request = deserializer(raw) if deserializer is not None else raw
                decoded = request if deserializer is not None or parse is None else parse(raw)
            except Exception:  # DecodeError, or whatever a deserializer raises on bad bytes
                return raw, f"the request is not a valid {message_type} request message"
            if isinstance(decoded, Message):
                return request, bounds.violation(decoded)
            return request, None

        return check


_Check = Callable[[Any], tuple[Any, "str | None"]]


def _raw_parser(method: str) -> Callable[[bytes], Message] | None:
    """Parser of ``/package.Service/Method`` requests from the default pool, when known."""
    service_name, _, name = method.lstrip("/").rpartition("/")
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return None
    found = service.methods_by_name.get(name)
    if found is None:
        return None
    message_class = message_factory.GetMessageClass(found.input_type)

    def parse(raw: bytes) -> Message:
        return message_class.FromString(raw)

    return parse


def _unary(method: str, behaviour: Any, check: _Check) -> Callable[[Any, Any], Any]:
    async def guarded(raw: Any, context: Any) -> Any:
        request, problem = check(raw)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(problem))
        handler_context = _CappedContext(context)
        try:
            return await behaviour(request, handler_context)
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _failed(context, handler_context, method, error)

    return guarded


def _streaming(
    method: str, behaviour: Any, check: _Check
) -> Callable[[Any, Any], AsyncIterator[Any]]:
    async def guarded(raw: Any, context: Any) -> AsyncIterator[Any]:
        request, problem = check(raw)
        if problem is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(problem))
        handler_context = _CappedContext(context)
        try:
            async for response in behaviour(request, handler_context):
                yield response
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            await _failed(context, handler_context, method, error)

    return guarded
