"""The Kubernetes API client a review asks through (TokenReview, SubjectAccessReview).

Opened on start and closed on stop; a review asked before start, or one the API server does not
answer, is ``ReviewUnavailable`` (the caller gets UNAVAILABLE) naming the API it needed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from coordinator.server.identity.authentication import ReviewUnavailable
from coordinator.server.kube_api import open_api_client

__all__ = ["ReviewClient"]

_log = structlog.get_logger(__name__)


class ReviewClient:
    """One API client for one review API; ``ask`` turns its failures into ReviewUnavailable."""

    def __init__(self, kubeconfig: Path | None, *, api: str, purpose: str) -> None:
        """``api``: the review's kind, for messages; ``purpose``: what the review checks
        ("check the token"), for the message that says it could not be checked."""
        self._kubeconfig = kubeconfig
        self._api_name = api
        self._purpose = purpose
        self._api: Any = None

    async def start(self) -> None:
        """Open the API client."""
        self._api = await open_api_client(self._kubeconfig)

    async def stop(self) -> None:
        """Close the API client."""
        if self._api is not None:
            await self._api.close()
            self._api = None

    async def ask(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        """``call(api_client)``'s answer; ReviewUnavailable when not started or on any failure."""
        if self._api is None:
            raise ReviewUnavailable(f"the {self._api_name} client is not started")
        try:
            return await call(self._api)
        except Exception as exc:
            _log.warning("auth.review_failed", api=self._api_name, error=str(exc)[:300])
            raise ReviewUnavailable(
                f"cannot {self._purpose} with the Kubernetes {self._api_name} API: {str(exc)[:200]}"
            ) from exc
