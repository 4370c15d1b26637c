"""Only the coordinator may call this adapter: the link token, checked on every call.

With ``--coordinator-token-file`` an adapter's server refuses (UNAUTHENTICATED) every call that
does not present ``authorization: Bearer <token>``, except gRPC health and reflection. A refused
call carrying a link challenge gets the proof of holding the token in its trailing metadata, so
the coordinator can tell a genuine adapter from a rogue one before it sends the token (see
``serving.link_tokens``). Refused requests are never decoded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import structlog

from serving.link_tokens import (
    AUTHORIZATION_HEADER,
    CHALLENGE_HEADER,
    PROOF_HEADER,
    link_proof,
    presents_token,
)

__all__ = ["OPEN_METHOD_PREFIXES", "CoordinatorGuard"]

_log = structlog.get_logger(__name__)

OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_MAX_NONCE = 128
_REFUSED = (
    "this adapter accepts calls only from its coordinator: present the coordinator link token "
    "(authorization: Bearer <token>, the coordinator's --adapter-token-file)"
)


def _metadata_value(metadata: Any, key: str) -> str:
    for item in metadata or ():
        if item[0] == key:
            value = item[1]
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


class CoordinatorGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A server interceptor refusing callers that do not present the link token."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        """The method's own handler for the coordinator; a refusing one for anybody else."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_METHOD_PREFIXES):
            return handler
        metadata = handler_call_details.invocation_metadata
        if presents_token(_metadata_value(metadata, AUTHORIZATION_HEADER), self._token):
            return handler
        trailing: tuple[tuple[str, str], ...] = ()
        nonce = _metadata_value(metadata, CHALLENGE_HEADER)
        if nonce and len(nonce) <= _MAX_NONCE:
            trailing = ((PROOF_HEADER, link_proof(self._token, nonce)),)
        else:
            _log.warning("adapter.caller_refused", method=method, reason="no link token")
        return _refusal(handler, trailing)


def _refusal(handler: Any, trailing: tuple[tuple[str, str], ...]) -> Any:
    """A handler of the same shape as ``handler`` that ends the call UNAUTHENTICATED."""

    async def refuse(context: Any) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _REFUSED, trailing_metadata=trailing)

    async def unary(request: Any, context: Any) -> Any:
        await refuse(context)

    async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
        await refuse(context)
        yield None  # never reached: abort raises

    shapes = {
        "unary_unary": (grpc.unary_unary_rpc_method_handler, unary),
        "unary_stream": (grpc.unary_stream_rpc_method_handler, streaming),
        "stream_unary": (grpc.stream_unary_rpc_method_handler, unary),
        "stream_stream": (grpc.stream_stream_rpc_method_handler, streaming),
    }
    for attribute, (build, behaviour) in shapes.items():
        if getattr(handler, attribute) is not None:
            return build(behaviour, response_serializer=handler.response_serializer)
    return handler
