"""Requests to one Kubernetes API server: one call through the client, and the retried form.

The `kubernetes.aio` client's generated API classes know only built-in kinds; `call_json` speaks
to any path with the client's authentication. `ApiRequests` retries every call the same way
(`serving.retry_policies`) and turns what fails into an `ApplyError` a user can act on.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from kubernetes.aio.client.exceptions import ApiException
from tenacity import AsyncRetrying

from adapters.kit.apply.kube_errors import ApplyError, describe_error
from adapters.kit.model.objects import ObjectRef
from serving.retry_policies import call_retrying, is_retryable_kubernetes_error, kubernetes_retry

__all__ = ["APPLY_PATCH", "ApiCall", "ApiRequests", "RetrySettings", "call_json"]

T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
_APPLY_PATCH_ENCODED = f"{APPLY_PATCH}; charset=utf-8"


def _encoded(body: Any, content_type: str | None) -> tuple[Any, str | None]:
    """An applied object's body as JSON bytes, under a media type the client sends as is."""
    if content_type == APPLY_PATCH and isinstance(body, bytes):
        return body, _APPLY_PATCH_ENCODED
    if content_type == APPLY_PATCH and isinstance(body, dict):
        # The client's serializer walks every value of a body in Python before encoding it
        # (an Istio CRD's schema: thousands of calls); an applied object is plain JSON already.
        # A ready `bytes` body passes through only under a media type the client does not
        # re-encode, so the same type is named with its charset parameter.
        return json.dumps(body, separators=(",", ":")).encode(), _APPLY_PATCH_ENCODED
    return body, content_type


async def call_json(
    api: Any,
    method: str,
    path: str,
    *,
    query: list[tuple[str, Any]] | None = None,
    body: Any = None,
    content_type: str | None = None,
    request_timeout: float,
    accept: str = "application/json",
) -> tuple[int, Any]:
    """One request through a `kubernetes.aio` client, once: (status, decoded JSON body or None).

    The client's generated API classes know only built-in kinds; this speaks to any path, with
    the client's authentication. A non-2xx answer raises the client's ``ApiException``.
    """
    body, content_type = _encoded(body, content_type)
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = await api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = await api.call_api(*serialized, _request_timeout=request_timeout)
    data = await response.read()
    text = data.decode("utf-8", "replace") if data else ""
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response, body=text)
    return response.status, (json.loads(text) if text else None)


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How transient API failures are retried (`serving.retry_policies.kubernetes_retry`)."""

    attempts: int = 8
    initial_delay: float = 0.05
    max_delay: float = 5.0
    max_retry_after: float = 10.0
    """Longest Retry-After we honour; a server asking for longer is capped (we still retry)."""
    max_elapsed: float = 60.0
    """Longest a failing call keeps retrying. An API server that accepts connections but never
    answers used to cost 8 attempts x the 30 s request timeout per call (4 minutes), per cluster
    and per call, queued behind the session's connection pool: a many-cluster request held an
    operation slot for over an hour."""


@dataclass(frozen=True, kw_only=True)
class ApiCall:
    """One request, and what it is about (``verb`` on ``resource``, ``ref``) for its errors."""

    method: str
    path: str
    verb: str
    resource: str
    ref: ObjectRef | None = None
    query: list[tuple[str, Any]] | None = None
    body: Any = None
    content_type: str | None = None
    accept: str = "application/json"


class ApiRequests:
    """Retried requests through one client: the same retry policy around every call."""

    def __init__(
        self,
        api: Any,
        *,
        retry: RetrySettings | None = None,
        request_timeout: float = 30.0,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self.api = api
        self._retry = retry or RetrySettings()
        self._on_retry = on_retry
        self._request_timeout = request_timeout

    @property
    def server(self) -> str:
        """The API server URL from the client's configuration."""
        return str(self.api.configuration.host)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        settings = self._retry
        hook = self._on_retry

        def policy() -> AsyncRetrying:
            return kubernetes_retry(
                attempts=settings.attempts,
                initial_delay=settings.initial_delay,
                max_delay=settings.max_delay,
                retry_after_cap=settings.max_retry_after,
                on_retry=(lambda _state: hook()) if hook is not None else None,
                max_elapsed=settings.max_elapsed,
            )

        return await call_retrying(call, policy, is_retryable_kubernetes_error)

    async def send(self, call: ApiCall, *, missing_ok: bool = False) -> tuple[int, Any]:
        """One retried request; 404 gives (404, None) when ``missing_ok``, else ApplyError."""

        async def once() -> tuple[int, Any]:
            return await call_json(
                self.api,
                call.method,
                call.path,
                query=call.query,
                body=call.body,
                content_type=call.content_type,
                request_timeout=self._request_timeout,
                accept=call.accept,
            )

        try:
            return await self._retrying(once)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return 404, None
            raise self._failure(exc, call) from exc
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise self._failure(exc, call) from exc

    def _failure(self, exc: BaseException, call: ApiCall) -> ApplyError:
        return ApplyError(
            describe_error(
                exc, verb=call.verb, resource=call.resource, ref=call.ref, server=self.server
            )
        )
