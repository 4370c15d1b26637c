"""The coordinator's side of the link token: proven adapters get it on every call, others nothing.

Each adapter channel carries a client interceptor. Until the replica behind the channel has
answered a link challenge with the proof of holding the same token (:meth:`AdapterLink.verify`,
run by the registry whenever it identifies a replica), the channel sends health checks and the
challenge only, and every other call fails here (UNAVAILABLE) without leaving the process; once
proven, every call carries ``authorization: Bearer <token>``. A proof holds on the connection
it was given on: once the channel is seen other than READY (it lost that connection, and the
next one may reach another process on the address), or the replica's health stream is lost,
the channel is unproven again until the next challenge succeeds. The channel's state is read
at each call, so a call made before the health follower has noticed the loss (an event stream
reconnecting, say) is stopped too. So a rogue process registered, discovered, or started on
the address of a stopped adapter never receives the token or a request. The token does not bind
the connection the way TLS does (a connection lost in the instant between that read and the
call leaving could still be retried by gRPC on a new one): against an attacker on the network
path or a hostile process on the adapter's host, use mTLS to the adapters as well.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import structlog

from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from serving.link_tokens import (
    AUTHORIZATION_HEADER,
    CHALLENGE_HEADER,
    PROOF_HEADER,
    bearer,
    link_proof,
    new_nonce,
)

__all__ = ["AdapterLink", "LinkRefused"]

_log = structlog.get_logger(__name__)

_HEALTH_PREFIX = "/grpc.health.v1.Health/"


class LinkRefused(Exception):
    """The replica did not prove it holds the link token; the message says why and the fix."""


@dataclass(kw_only=True)
class _Proven:
    address: str
    proven: bool = False
    channel: Any = None
    """The channel the proof was given on (set by :meth:`AdapterLink.verify`)."""

    def holds(self) -> bool:
        """Proven, on the connection the proof was given on (a channel seen other than READY
        voids it for good: it may reconnect to another process)."""
        if self.proven and self.channel is not None:
            state = self.channel.get_state(try_to_connect=False)
            if state != grpc.ChannelConnectivity.READY:
                self.proven = False
        return self.proven


def _with_token(details: Any, token: str) -> Any:
    """The call's metadata with our token as its only ``authorization`` (a caller's own,
    passed through, never reaches an adapter)."""
    kept = [item for item in details.metadata or () if item[0] != AUTHORIZATION_HEADER]
    metadata = grpc.aio.Metadata(*kept)
    metadata.add(AUTHORIZATION_HEADER, bearer(token))
    return details._replace(metadata=metadata)


def _carries_challenge(details: Any) -> bool:
    return any(item[0] == CHALLENGE_HEADER for item in details.metadata or ())


class _Presenter:
    """Adds the token to calls on a proven channel; stops calls on an unproven one."""

    def __init__(self, token: str, state: _Proven) -> None:
        self._token = token
        self._state = state

    def outbound(self, details: Any) -> Any:
        """The call's details with the token, or AioRpcError(UNAVAILABLE) when unproven."""
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if self._state.holds():
            return _with_token(details, self._token)
        if method.startswith(_HEALTH_PREFIX) or _carries_challenge(details):
            return details
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=f"the adapter at {self._state.address} has not proven it holds the "
            "coordinator link token; nothing is sent to it until it does",
        )


# grpc.aio files an interceptor under its first matching kind only: one class per kind.
class _UnaryPresenter(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, presenter: _Presenter) -> None:
        self._presenter = presenter

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        """Unary calls: see `_Presenter`."""
        return await continuation(self._presenter.outbound(details), request)


class _StreamPresenter(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, presenter: _Presenter) -> None:
        self._presenter = presenter

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        """Server-streaming calls: see `_Presenter`."""
        return await continuation(self._presenter.outbound(details), request)


class AdapterLink:
    """The link token (``--adapter-token-file``) and which adapter channels have proven it."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._states: dict[str, _Proven] = {}

    def interceptors(self, address: str) -> Sequence[Any]:
        """Interceptors for a new channel to ``address`` (unproven until :meth:`verify`)."""
        state = _Proven(address=address)
        self._states[address] = state
        presenter = _Presenter(self._token, state)
        return (_UnaryPresenter(presenter), _StreamPresenter(presenter))

    def forget(self, address: str) -> None:
        """The connection to ``address`` was lost: whoever answers next must prove itself."""
        state = self._states.get(address)
        if state is not None:
            state.proven = False

    def proven(self, address: str) -> bool:
        """True while the replica at ``address`` has proven it holds the token."""
        state = self._states.get(address)
        return state is not None and state.holds()

    async def verify(self, channel: Any, address: str, seconds: float) -> None:
        """Challenge the replica behind ``channel``; raises `LinkRefused` unless it proves it.

        An unreachable replica raises the call's ``grpc.aio.AioRpcError``. Either way the
        channel stays (or becomes) unproven until a later challenge succeeds.
        """
        state = self._states.get(address)
        if state is None:
            raise LinkRefused(f"no link state for the adapter at {address} (dialled elsewhere)")
        nonce = new_nonce()
        stub = adapter_grpc.MeshAdapterServiceStub(channel)
        state.proven = False
        try:
            await stub.GetInfo(
                adapter_pb.GetInfoRequest(), timeout=seconds, metadata=((CHALLENGE_HEADER, nonce),)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
                raise
            answers = [v for k, v in exc.trailing_metadata() or () if k == PROOF_HEADER]
            proof = str(answers[0]) if answers else ""
            if proof and hmac.compare_digest(proof, link_proof(self._token, nonce)):
                state.channel = channel
                state.proven = True
                return
            _log.warning("adapter_link.refused", address=address, proof=bool(proof))
            raise LinkRefused(
                f"the adapter at {address} did not prove it holds the coordinator link token "
                f"({'wrong proof' if proof else 'no proof'}): it is not one of ours, or its "
                "--coordinator-token-file differs from this coordinator's --adapter-token-file"
            ) from None
        _log.warning("adapter_link.unguarded", address=address)
        raise LinkRefused(
            f"the adapter at {address} answered without asking for the coordinator link token: "
            "start it with --coordinator-token-file (the token of --adapter-token-file)"
        )
