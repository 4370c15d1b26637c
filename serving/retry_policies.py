"""Retry policies for Kubernetes and gRPC calls, in one place so every caller agrees.

gRPC: only UNAVAILABLE is always retryable (the request did not reach a handler, or the peer
went away). DEADLINE_EXCEEDED is retried only for idempotent calls, because the server may have
acted on the request. RESOURCE_EXHAUSTED is never retried: in meshplane it means an oversized
message (the same bytes fail again) or a stream follower that fell behind, which must resume
from its last sequence rather than blindly repeat the call.

Kubernetes: 429 and 5xx gateway/availability statuses (500, 502, 503, 504) and connection
errors are retried with exponential backoff and jitter; a ``Retry-After`` header (seconds or an
HTTP date) replaces the computed backoff, capped so a misbehaving server cannot stall us.

Every policy is bounded in attempts, re-raises the last error, and accepts ``on_retry`` (called
before each sleep) so callers can count retries, e.g. in a Prometheus counter.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import grpc
import structlog
import urllib3.exceptions
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

_log = structlog.get_logger(__name__)

OnRetry = Callable[[RetryCallState], None]
T = TypeVar("T")

RETRYABLE_GRPC_CODES: frozenset[Any] = frozenset({grpc.StatusCode.UNAVAILABLE})
"""Codes retried for every call."""

RETRYABLE_IDEMPOTENT_GRPC_CODES: frozenset[Any] = RETRYABLE_GRPC_CODES | {
    grpc.StatusCode.DEADLINE_EXCEEDED
}
"""Codes retried when repeating the call cannot do something twice."""

RETRYABLE_KUBERNETES_STATUSES = frozenset({429, 500, 502, 503, 504})

KUBERNETES_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,  # includes ServerDisconnectedError, ServerTimeoutError
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.TimeoutError,
    ConnectionError,  # ConnectionResetError, ConnectionRefusedError, BrokenPipeError
    asyncio.TimeoutError,
)
"""Transport failures worth another attempt (TLS verification errors are not among them)."""

_API_EXCEPTION_MODULES = ("kubernetes.client.exceptions", "kubernetes.aio.client.exceptions")


def api_exception_types() -> tuple[type[Exception], ...]:
    """The Kubernetes ``ApiException`` classes (blocking and asyncio) that are loaded.

    Looked up in ``sys.modules`` rather than imported: an instance can only exist once its module
    is loaded, and importing both clients would cost every process most of a second at start.
    """
    found: list[type[Exception]] = []
    for name in _API_EXCEPTION_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            found.append(module.ApiException)
    return tuple(found)


class BackoffWait(wait_base):
    """Exponential backoff with "equal jitter": half the step fixed, half random.

    Attempt n waits uniformly in [s/2, s] with s = min(maximum, initial * 2**(n-1)), which
    spreads synchronised clients apart without ever retrying immediately. ``rng`` makes it
    deterministic in tests.
    """

    def __init__(self, *, initial: float, maximum: float, rng: random.Random | None = None) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError("need 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()

    def step(self, attempt_number: int) -> float:
        """The un-jittered ceiling for an attempt."""
        return float(min(self.maximum, self.initial * 2 ** max(0, attempt_number - 1)))

    def __call__(self, retry_state: RetryCallState) -> float:
        ceiling = self.step(retry_state.attempt_number)
        return self._rng.uniform(ceiling / 2, ceiling)


class RetryAfterWait(wait_base):
    """Honour a Kubernetes ``Retry-After`` header (capped); otherwise fall back to backoff."""

    def __init__(self, *, fallback: wait_base, cap: float) -> None:
        self.fallback = fallback
        self.cap = cap

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None and outcome.failed else None
        if exc is not None:
            delay = retry_after_seconds(exc)
            if delay is not None:
                return min(self.cap, delay)
        return float(self.fallback(retry_state))


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    if isinstance(headers, Mapping) or hasattr(headers, "items"):
        for key, value in headers.items():
            if str(key).lower() == name.lower():
                return str(value)
    return None


def retry_after_seconds(exc: BaseException, *, now: datetime | None = None) -> float | None:
    """Seconds a Kubernetes ``ApiException`` asks us to wait, or None when it does not say."""
    if not isinstance(exc, api_exception_types()):
        return None
    raw = _header(getattr(exc, "headers", None), "Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def grpc_status_code(exc: BaseException) -> Any:
    """The ``grpc.StatusCode`` carried by an RPC error, or None for anything else."""
    if isinstance(exc, grpc.RpcError):
        code = getattr(exc, "code", None)
        if callable(code):
            return code()
    return None


def is_retryable_grpc_error(exc: BaseException, *, idempotent: bool) -> bool:
    """True when the call may be repeated after ``exc``."""
    codes = RETRYABLE_IDEMPOTENT_GRPC_CODES if idempotent else RETRYABLE_GRPC_CODES
    return grpc_status_code(exc) in codes


def is_retryable_kubernetes_error(exc: BaseException) -> bool:
    """True for 429/500/502/503/504 API errors and transport failures."""
    if isinstance(exc, api_exception_types()):
        return getattr(exc, "status", None) in RETRYABLE_KUBERNETES_STATUSES
    return isinstance(exc, KUBERNETES_CONNECTION_ERRORS)


def _before_sleep(kind: str, on_retry: OnRetry | None) -> OnRetry:
    def hook(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        _log.warning(
            "retry.scheduled",
            kind=kind,
            call=getattr(state.fn, "__qualname__", None),
            attempt=state.attempt_number,
            sleep_seconds=round(state.upcoming_sleep, 3),
            error=repr(exc),
        )
        if on_retry is not None:
            on_retry(state)

    return hook


def _grpc_kwargs(
    *,
    attempts: int,
    initial_delay: float,
    max_delay: float,
    idempotent: bool,
    on_retry: OnRetry | None,
    rng: random.Random | None,
) -> dict[str, Any]:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    return {
        "stop": stop_after_attempt(attempts),
        "wait": BackoffWait(initial=initial_delay, maximum=max_delay, rng=rng),
        "retry": retry_if_exception(lambda e: is_retryable_grpc_error(e, idempotent=idempotent)),
        "before_sleep": _before_sleep("grpc", on_retry),
        "reraise": True,
    }


def grpc_retry(
    *,
    attempts: int = 4,
    initial_delay: float = 0.1,
    max_delay: float = 2.0,
    idempotent: bool = False,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> AsyncRetrying:
    """A fresh policy for gRPC calls: ``async for attempt in grpc_retry(...)`` or ``.wraps(fn)``.

    Build one per call site invocation (an ``AsyncRetrying`` holds per-run state when iterated).
    """
    return AsyncRetrying(
        **_grpc_kwargs(
            attempts=attempts,
            initial_delay=initial_delay,
            max_delay=max_delay,
            idempotent=idempotent,
            on_retry=on_retry,
            rng=rng,
        )
    )


def _kubernetes_kwargs(
    *,
    attempts: int,
    initial_delay: float,
    max_delay: float,
    retry_after_cap: float,
    on_retry: OnRetry | None,
    rng: random.Random | None,
    max_elapsed: float | None = None,
) -> dict[str, Any]:
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    backoff = BackoffWait(initial=initial_delay, maximum=max_delay, rng=rng)
    stop: stop_base = stop_after_attempt(attempts)
    if max_elapsed is not None:
        stop = stop | stop_after_delay(max_elapsed)
    return {
        "stop": stop,
        "wait": RetryAfterWait(fallback=backoff, cap=retry_after_cap),
        "retry": retry_if_exception(is_retryable_kubernetes_error),
        "before_sleep": _before_sleep("kubernetes", on_retry),
        "reraise": True,
    }


def kubernetes_retry(
    *,
    attempts: int = 5,
    initial_delay: float = 0.2,
    max_delay: float = 5.0,
    retry_after_cap: float = 30.0,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
    max_elapsed: float | None = None,
) -> AsyncRetrying:
    """A fresh policy for Kubernetes API calls from asyncio code (``kubernetes.aio``).

    ``max_elapsed`` also stops retrying once that many seconds have passed since the policy
    started (no new attempt begins after it), whatever attempts are left.
    """
    return AsyncRetrying(
        **_kubernetes_kwargs(
            attempts=attempts,
            initial_delay=initial_delay,
            max_delay=max_delay,
            retry_after_cap=retry_after_cap,
            on_retry=on_retry,
            rng=rng,
            max_elapsed=max_elapsed,
        )
    )


async def call_retrying(
    call: Callable[[], Awaitable[T]],
    policy: Callable[[], AsyncRetrying],
    retryable: Callable[[BaseException], bool],
) -> T:
    """``await call()`` under ``policy()``, building the policy only once the call has failed.

    Almost every call succeeds at once, and a tenacity policy costs more to build and run than
    a request to a nearby server takes. So the first attempt runs bare; a failure ``retryable``
    refuses is raised as is; a retryable one starts the policy, whose first attempt re-raises
    that same failure (no second request), so waits (Retry-After), ``on_retry`` hooks and the
    attempt limit behave exactly as if the policy had run from the start.
    """
    try:
        return await call()
    except Exception as exc:
        if not retryable(exc):
            raise
        first: Exception | None = exc

    async def attempt() -> T:
        nonlocal first
        if first is not None:
            failure, first = first, None
            raise failure
        return await call()

    attempt.__qualname__ = getattr(call, "__qualname__", attempt.__qualname__)
    result: T = await policy()(attempt)
    return result


def kubernetes_retry_blocking(
    *,
    attempts: int = 5,
    initial_delay: float = 0.2,
    max_delay: float = 5.0,
    retry_after_cap: float = 30.0,
    on_retry: OnRetry | None = None,
    rng: random.Random | None = None,
) -> Retrying:
    """The same policy for the blocking ``kubernetes.client`` (used from worker threads)."""
    return Retrying(
        **_kubernetes_kwargs(
            attempts=attempts,
            initial_delay=initial_delay,
            max_delay=max_delay,
            retry_after_cap=retry_after_cap,
            on_retry=on_retry,
            rng=rng,
        )
    )
