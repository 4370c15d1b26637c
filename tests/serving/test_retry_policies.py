"""Retry policies: predicates and waits computed exactly, and one run against a real HTTP server."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import grpc
import grpc.aio
import pytest
import urllib3.exceptions
from aiohttp import web
from kubernetes.aio import client as k8s_aio
from kubernetes.client.exceptions import ApiException
from tenacity import AsyncRetrying, RetryCallState, Retrying

from serving import (
    RETRYABLE_GRPC_CODES,
    BackoffWait,
    RetryAfterWait,
    call_retrying,
    grpc_retry,
    is_retryable_grpc_error,
    is_retryable_kubernetes_error,
    kubernetes_retry,
    kubernetes_retry_blocking,
    retry_after_seconds,
)


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="x")


def api_error(status: int, headers: dict[str, str] | None = None) -> ApiException:
    exc = ApiException(status=status, reason="test")
    exc.headers = headers
    return exc


def state_after(attempt: int, exc: BaseException | None = None) -> RetryCallState:
    """A RetryCallState as tenacity builds it after ``attempt`` failed with ``exc``."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    if exc is not None:
        state.set_exception((type(exc), exc, None))
    return state


# --- gRPC -----------------------------------------------------------------------------------


def test_grpc_codes_retryable_by_idempotency() -> None:
    assert grpc.StatusCode.UNAVAILABLE in RETRYABLE_GRPC_CODES
    unavailable = rpc_error(grpc.StatusCode.UNAVAILABLE)
    deadline = rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)
    assert is_retryable_grpc_error(unavailable, idempotent=False)
    assert is_retryable_grpc_error(unavailable, idempotent=True)
    assert not is_retryable_grpc_error(deadline, idempotent=False)
    assert is_retryable_grpc_error(deadline, idempotent=True)
    for code in (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
    ):
        assert not is_retryable_grpc_error(rpc_error(code), idempotent=True), code
    assert not is_retryable_grpc_error(ConnectionResetError(), idempotent=True)


async def test_grpc_retry_repeats_unavailable_and_counts_retries() -> None:
    failures = [rpc_error(grpc.StatusCode.UNAVAILABLE)] * 2
    retries: list[int] = []

    async def call() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    policy = grpc_retry(
        attempts=4,
        initial_delay=0.001,
        max_delay=0.002,
        on_retry=lambda s: retries.append(s.attempt_number),
    )
    assert await policy.wraps(call)() == "ok"
    assert retries == [1, 2]


async def test_grpc_retry_is_bounded_and_reraises_the_last_error() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise rpc_error(grpc.StatusCode.UNAVAILABLE)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for attempt in grpc_retry(attempts=3, initial_delay=0.001, max_delay=0.001):
            with attempt:
                await call()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert calls == 3


async def test_grpc_retry_does_not_repeat_non_idempotent_deadline() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED)

    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_retry(attempts=5, initial_delay=0.001, max_delay=0.001).wraps(call)()
    assert calls == 1
    calls = 0
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_retry(attempts=3, initial_delay=0.001, max_delay=0.001, idempotent=True).wraps(
            call
        )()
    assert calls == 3


def test_policies_reject_zero_attempts() -> None:
    with pytest.raises(ValueError, match="attempts"):
        grpc_retry(attempts=0)
    with pytest.raises(ValueError, match="attempts"):
        kubernetes_retry(attempts=0)


# --- waits ----------------------------------------------------------------------------------


def test_backoff_doubles_within_equal_jitter_bounds_and_caps() -> None:
    wait = BackoffWait(initial=0.5, maximum=4.0, rng=random.Random(7))
    assert [wait.step(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for attempt in range(1, 7):
        for _ in range(50):
            delay = wait(state_after(attempt))
            ceiling = wait.step(attempt)
            assert ceiling / 2 <= delay <= ceiling


def test_backoff_is_deterministic_for_a_seed_and_jittered_across_seeds() -> None:
    def sequence(seed: int) -> list[float]:
        wait = BackoffWait(initial=1.0, maximum=30.0, rng=random.Random(seed))
        return [wait(state_after(n)) for n in range(1, 6)]

    assert sequence(1) == sequence(1)
    assert sequence(1) != sequence(2)


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BackoffWait(initial=0, maximum=1)
    with pytest.raises(ValueError):
        BackoffWait(initial=2, maximum=1)


def test_retry_after_seconds_parses_seconds_and_http_dates() -> None:
    assert retry_after_seconds(api_error(429, {"Retry-After": "3"})) == 3.0
    assert retry_after_seconds(api_error(429, {"retry-after": " 2 "})) == 2.0
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    dated = api_error(503, {"Retry-After": format_datetime(now + timedelta(seconds=7), True)})
    assert retry_after_seconds(dated, now=now) == 7.0
    past = api_error(503, {"Retry-After": format_datetime(now - timedelta(seconds=7), True)})
    assert retry_after_seconds(past, now=now) == 0.0
    assert retry_after_seconds(api_error(429, {"Retry-After": "soon"})) is None
    assert retry_after_seconds(api_error(429, None)) is None
    assert retry_after_seconds(ConnectionResetError()) is None


def test_retry_after_wait_honours_header_with_cap_else_backoff() -> None:
    backoff = BackoffWait(initial=0.1, maximum=0.1, rng=random.Random(0))
    wait = RetryAfterWait(fallback=backoff, cap=10.0)
    assert wait(state_after(1, api_error(429, {"Retry-After": "4"}))) == 4.0
    assert wait(state_after(1, api_error(429, {"Retry-After": "600"}))) == 10.0
    fallback = wait(state_after(1, api_error(503)))
    assert 0.05 <= fallback <= 0.1
    assert 0.05 <= wait(state_after(2, ConnectionResetError())) <= 0.1


# --- Kubernetes -----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_kubernetes_retryable_statuses(status: int) -> None:
    assert is_retryable_kubernetes_error(api_error(status))


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422, 501])
def test_kubernetes_final_statuses(status: int) -> None:
    assert not is_retryable_kubernetes_error(api_error(status))


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ClientConnectionError("refused"),
        aiohttp.ServerDisconnectedError(),
        urllib3.exceptions.ProtocolError("reset"),
        urllib3.exceptions.MaxRetryError(None, "/api", None),  # type: ignore[arg-type]
        urllib3.exceptions.ReadTimeoutError(None, "/api", "slow"),  # type: ignore[arg-type]
        ConnectionResetError(),
        ConnectionRefusedError(),
        TimeoutError(),
    ],
)
def test_kubernetes_connection_errors_are_retryable(exc: BaseException) -> None:
    assert is_retryable_kubernetes_error(exc)


def test_kubernetes_other_errors_are_final() -> None:
    assert not is_retryable_kubernetes_error(ValueError("bad manifest"))
    assert not is_retryable_kubernetes_error(urllib3.exceptions.SSLError("bad cert"))
    assert not is_retryable_kubernetes_error(KeyError("spec"))


def test_blocking_kubernetes_policy_retries_then_gives_up() -> None:
    calls = 0
    retries: list[float] = []

    def call() -> None:
        nonlocal calls
        calls += 1
        raise api_error(503)

    policy = kubernetes_retry_blocking(
        attempts=3,
        initial_delay=0.001,
        max_delay=0.001,
        on_retry=lambda s: retries.append(s.upcoming_sleep),
    )
    with pytest.raises(ApiException):
        policy(call)
    assert calls == 3
    assert len(retries) == 2


async def test_kubernetes_retry_waits_retry_after_from_a_real_server() -> None:
    """A real aiohttp server answers 429 + Retry-After: 1, then 200; kubernetes.aio retries."""
    hits: list[float] = []

    async def namespaces(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 429},
                status=429,
                headers={"Retry-After": "1"},
            )
        return web.json_response(
            {
                "kind": "NamespaceList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": [{"metadata": {"name": "istio-system"}}],
            }
        )

    app = web.Application()
    app.router.add_get("/api/v1/namespaces", namespaces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    sleeps: list[float] = []
    try:
        config = k8s_aio.Configuration(host=f"http://127.0.0.1:{port}")
        async with k8s_aio.ApiClient(config) as api_client:
            core = k8s_aio.CoreV1Api(api_client)
            policy = kubernetes_retry(
                attempts=3,
                initial_delay=0.01,
                max_delay=0.02,
                retry_after_cap=5,
                on_retry=lambda s: sleeps.append(s.upcoming_sleep),
            )
            result = await policy.wraps(core.list_namespace)()
    finally:
        await runner.cleanup()
    assert [ns.metadata.name for ns in result.items if ns.metadata] == ["istio-system"]
    assert sleeps == [1.0]
    assert len(hits) == 2
    assert hits[1] - hits[0] >= 0.95


# --- first attempt without a policy ---------------------------------------------------------


class Flaky:
    """A call failing with ``failures`` in turn, then answering ``"ok"``; counts its calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def counting_policy(
    built: list[int], sleeps: list[float], attempts: int = 4
) -> Callable[[], AsyncRetrying]:
    def policy() -> AsyncRetrying:
        built.append(1)
        return kubernetes_retry(
            attempts=attempts,
            initial_delay=0.001,
            max_delay=0.002,
            retry_after_cap=0.05,
            on_retry=lambda s: sleeps.append(s.upcoming_sleep),
        )

    return policy


async def test_call_retrying_builds_no_policy_when_the_first_attempt_succeeds() -> None:
    built: list[int] = []
    call = Flaky()
    assert await call_retrying(call, counting_policy(built, []), is_retryable_kubernetes_error)
    assert (call.calls, built) == (1, [])


async def test_call_retrying_raises_a_final_error_at_once() -> None:
    built: list[int] = []
    call = Flaky(api_error(404), api_error(404))
    with pytest.raises(ApiException) as raised:
        await call_retrying(call, counting_policy(built, []), is_retryable_kubernetes_error)
    assert raised.value.status == 404
    assert (call.calls, built) == (1, [])


async def test_call_retrying_counts_the_first_failure_and_honours_its_retry_after() -> None:
    built: list[int] = []
    sleeps: list[float] = []
    call = Flaky(api_error(429, {"Retry-After": "0.03"}), api_error(503))
    assert (
        await call_retrying(call, counting_policy(built, sleeps), is_retryable_kubernetes_error)
        == "ok"
    )
    # Two failures, two retries: the first failure's Retry-After set the first wait, and the
    # failure was not requested a second time to get there.
    assert call.calls == 3
    assert built == [1]
    assert len(sleeps) == 2
    assert sleeps[0] == pytest.approx(0.03)


async def test_call_retrying_keeps_the_attempt_limit() -> None:
    sleeps: list[float] = []
    call = Flaky(*(api_error(503) for _ in range(10)))
    with pytest.raises(ApiException):
        await call_retrying(
            call, counting_policy([], sleeps, attempts=3), is_retryable_kubernetes_error
        )
    assert call.calls == 3
    assert len(sleeps) == 2
