"""Counting every gRPC call a server answers, by service, method and status code.

A ``grpc.aio`` server interceptor wraps each method's behaviour once (cached per handler), so
aborted calls count with the status they were aborted with, a handler that raised counts as
UNKNOWN (what the client sees) and a call the client abandoned counts as CANCELLED.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from prometheus_client import CollectorRegistry, Counter

__all__ = ["RequestMetrics"]


def _split(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` → (``pkg.Service``, ``Method``)."""
    service, _, name = method.lstrip("/").partition("/")
    return service, name


class RequestMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``<prefix>_grpc_requests_total{service,method,code}`` on ``registry``."""

    def __init__(self, registry: CollectorRegistry, *, prefix: str) -> None:
        self.requests = Counter(
            f"{prefix}_grpc_requests_total",
            "gRPC calls answered, by service, method and status code.",
            ("service", "method", "code"),
            registry=registry,
        )
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def _count(self, method: str, code: str) -> None:
        service, name = _split(method)
        self.requests.labels(service, name, code).inc()

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], handler_call_details: Any
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        if handler.request_streaming:
            return handler  # no client-streaming methods in meshplane's contracts
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            self._unary(method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _unary(self, method: str, behaviour: Any) -> Any:
        async def counted(request: Any, context: Any) -> Any:
            error: BaseException | None = None
            try:
                return await behaviour(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._count(method, _code(context, error))

        return counted

    def _streaming(self, method: str, behaviour: Any) -> Any:
        async def counted(request: Any, context: Any) -> AsyncIterator[Any]:
            error: BaseException | None = None
            try:
                async for response in behaviour(request, context):
                    yield response
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._count(method, _code(context, error))

        return counted


def _code(context: Any, error: BaseException | None) -> str:
    """The status a call ends with: what the handler set or aborted with; else CANCELLED when
    the caller went away, UNKNOWN when the handler raised, OK."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    return "OK" if error is None else "UNKNOWN"
