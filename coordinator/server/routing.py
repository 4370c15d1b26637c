"""Choosing a healthy replica for each call, with deadlines and safe retries.

Replicas are chosen by least outstanding calls, ties broken round-robin, so a slow replica gets
less traffic and equal ones share it evenly. Every outbound call has a deadline: the caller's
remaining time when it gave one, capped by the coordinator's default. Only calls that cannot do
something twice are retried (read-only calls, and ApplyOperation because it carries an operation
id assigned before the first attempt); a retry goes to another healthy replica when there is one.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog
from tenacity import RetryCallState

from coordinator.server.registry import Registry
from coordinator.server.replicas import Replica
from serving.input_quoting import quoted
from serving.retry_policies import grpc_retry, is_retryable_grpc_error

__all__ = [
    "DRY_RUN_CAPABILITY",
    "LONG_CALL_SECONDS",
    "Invoke",
    "RouteError",
    "Router",
    "check_dry_run_capability",
    "long_call_seconds",
]

_log = structlog.get_logger(__name__)

T = TypeVar("T")

Invoke = Callable[[Replica, Any, float], Awaitable[T]]
"""``invoke(replica, channel, timeout_seconds)`` performs one attempt against one replica."""


class RouteError(Exception):
    """No replica can take the call; ``code`` is the gRPC status to answer with."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Router:
    """Picks replicas from the registry and runs calls against them."""

    def __init__(
        self,
        registry: Registry,
        *,
        call_timeout: float = 10.0,
        attempts: int = 3,
        retry_initial_delay: float = 0.05,
        retry_max_delay: float = 1.0,
    ) -> None:
        self._registry = registry
        self.call_timeout = call_timeout
        self._attempts = attempts
        self._delays = (retry_initial_delay, retry_max_delay)
        self._outstanding: dict[str, int] = defaultdict(int)
        self._turn: dict[str, int] = defaultdict(int)

    def outstanding(self, address: str) -> int:
        """Calls in flight to ``address`` through this router."""
        return self._outstanding.get(address, 0)

    def timeout(self, caller_remaining: float | None) -> float:
        """The deadline of an outbound call: the caller's remaining time, at most the default."""
        if caller_remaining is None:
            return self.call_timeout
        return max(0.0, min(self.call_timeout, caller_remaining))

    def pick(self, mesh: str, *, exclude: Collection[str] = ()) -> Replica:
        """A healthy replica of ``mesh``, avoiding ``exclude`` when another one is healthy.

        Raises `RouteError`: NOT_FOUND for an unknown mesh (listing the known ones),
        UNAVAILABLE when no replica is healthy (naming each replica's last error).
        """
        replicas = self._registry.mesh_replicas(mesh)
        if not replicas:
            known = ", ".join(self._registry.meshes()) or "none registered"
            raise RouteError(
                grpc.StatusCode.NOT_FOUND, f"unknown mesh {quoted(mesh)}; known meshes: {known}"
            )
        healthy = [r for r in replicas if r.serving]
        if not healthy:
            reasons = "; ".join(
                f"{r.address} {r.state.value}: {r.last_error or 'not checked yet'}"
                for r in replicas
            )
            raise RouteError(
                grpc.StatusCode.UNAVAILABLE,
                f"no healthy replica of the {mesh} adapter ({reasons})",
            )
        if exclude:
            healthy = [r for r in healthy if r.address not in exclude] or healthy
        counts = [self._outstanding.get(r.address, 0) for r in healthy]
        least = min(counts)
        candidates = [r for r, count in zip(healthy, counts, strict=True) if count == least]
        turn = self._turn[mesh]
        self._turn[mesh] = turn + 1
        return candidates[turn % len(candidates)]

    async def call(
        self,
        mesh: str,
        invoke: Invoke[T],
        *,
        caller_remaining: float | None,
        retry: bool,
        method: str,
    ) -> tuple[T, Replica]:
        """Run ``invoke`` on a healthy replica of ``mesh``; return its result and the replica.

        With ``retry``, UNAVAILABLE and DEADLINE_EXCEEDED are retried on another replica while
        the deadline allows; without it, a single attempt is made.
        """
        seconds = self.timeout(caller_remaining)
        started = time.monotonic()  # not loop.time(): getting the loop costs a getpid() syscall
        # The first attempt runs bare: the common case pays nothing for the retry machinery.
        replica = self.pick(mesh)
        try:
            return await self.call_replica(replica, invoke, seconds=seconds), replica
        except grpc.aio.AioRpcError as error:
            if (
                not retry
                or self._attempts < 2
                or not is_retryable_grpc_error(error, idempotent=True)
            ):
                raise
            _log.info(
                "routing.retry",
                mesh=mesh,
                method=method,
                attempt=1,
                replica=replica.address,
                error=_describe(error),
            )
        return await self._retry(
            mesh, invoke, method=method, deadline=started + seconds, tried=[replica]
        )

    async def _retry(
        self,
        mesh: str,
        invoke: Invoke[T],
        *,
        method: str,
        deadline: float,
        tried: list[Replica],
    ) -> tuple[T, Replica]:
        """Attempts after the first, each on another healthy replica when there is one.

        ``deadline`` is on the ``time.monotonic()`` clock.
        """

        async def attempt() -> tuple[T, Replica]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RouteError(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"{method} to the {mesh} adapter ran out of time after {len(tried)} "
                    f"attempt(s) ({', '.join(r.address for r in tried)})",
                )
            replica = self.pick(mesh, exclude=[r.address for r in tried])
            tried.append(replica)
            return await self.call_replica(replica, invoke, seconds=remaining), replica

        def on_retry(state: RetryCallState) -> None:
            outcome = state.outcome
            _log.info(
                "routing.retry",
                mesh=mesh,
                method=method,
                attempt=state.attempt_number + 1,
                replica=tried[-1].address,
                error=_describe(outcome.exception() if outcome is not None else None),
            )

        initial, maximum = self._delays
        policy = grpc_retry(
            attempts=self._attempts - 1,
            initial_delay=initial,
            max_delay=maximum,
            idempotent=True,
            on_retry=on_retry,
        )
        result: tuple[T, Replica] | None = None
        async for retrying in policy:
            with retrying:
                result = await attempt()
        assert result is not None  # the policy re-raises the last error when every attempt fails
        return result

    async def call_replica(self, replica: Replica, invoke: Invoke[T], *, seconds: float) -> T:
        """One attempt against one replica, counted as outstanding while it runs."""
        channel = self._registry.channel(replica.address)
        self._outstanding[replica.address] += 1
        try:
            return await invoke(replica, channel, seconds if math.isfinite(seconds) else 0.0)
        finally:
            self._outstanding[replica.address] -= 1
            if not self._outstanding[replica.address]:
                del self._outstanding[replica.address]


LONG_CALL_SECONDS = 300.0
"""Longest deadline of a call that does an operation's work before answering (a dry run, a
rendering), when the caller sets no shorter one; other calls get the router's call timeout."""


def long_call_seconds(caller_remaining: float | None) -> float:
    """The deadline of such a call: the caller's remaining time, at most `LONG_CALL_SECONDS`."""
    if caller_remaining is None:
        return LONG_CALL_SECONDS
    return min(LONG_CALL_SECONDS, caller_remaining)


DRY_RUN_CAPABILITY = "dry-run"
"""What an adapter that honours ApplyOperationRequest.dry_run lists in GetInfo.capabilities."""


def check_dry_run_capability(replica: Replica) -> None:
    """Refuse (FAILED_PRECONDITION) to send a dry run to a replica that does not say it honours
    one: an adapter built before the field existed would ignore it and really apply."""
    if DRY_RUN_CAPABILITY not in replica.capabilities:
        raise RouteError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the {replica.mesh} adapter at {replica.address} does not support dry runs (its "
            f"GetInfo lists no {DRY_RUN_CAPABILITY!r} capability; it would apply the operation): "
            "upgrade it, or use `meshplane template` to see its manifests",
        )


def _describe(error: BaseException | None) -> str | None:
    if error is None:
        return None
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return str(error)
