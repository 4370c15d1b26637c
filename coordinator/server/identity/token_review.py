"""``--authn-kubernetes``: bearer tokens checked with the cluster's TokenReview API.

ServiceAccount tokens (bound or legacy) and whatever else the API server trusts become
identities. Answers are cached by the token's SHA-256 digest for a short time (``--auth-cache``,
10 s) in a bounded cache; an API server that cannot be asked makes the call UNAVAILABLE.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from coordinator.server.identity.answer_cache import AnswerCache
from coordinator.server.identity.review_client import ReviewClient
from coordinator.server.identity.subjects import Subject
from coordinator.server.kube_api import kube_client

__all__ = ["KubernetesTokenReviewer"]


class KubernetesTokenReviewer:
    """Asks ``authentication.k8s.io/v1`` TokenReview about bearer tokens."""

    def __init__(
        self,
        kubeconfig: Path | None,
        *,
        audiences: tuple[str, ...] = (),
        cache_seconds: float = 10.0,
        max_entries: int = 4096,
    ) -> None:
        self._audiences = audiences
        self._cache: AnswerCache[bytes, Subject | None] = AnswerCache(
            ttl_seconds=cache_seconds, max_entries=max_entries
        )
        self._client = ReviewClient(kubeconfig, api="TokenReview", purpose="check the token")

    async def start(self) -> None:
        """Open the API client."""
        await self._client.start()

    async def stop(self) -> None:
        """Close the API client."""
        await self._client.stop()

    async def review(self, token: str) -> Subject | None:
        """The token's user, uid and groups; None when the API server does not accept it."""
        key = hashlib.sha256(token.encode("utf-8")).digest()
        hit, cached = self._cache.get(key)
        if hit:
            return cached
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = await self._client.ask(
            lambda api: kube_client.AuthenticationV1Api(api).create_token_review(body)
        )
        subject = _subject(answer, self._audiences)
        self._cache.put(key, subject)
        return subject


def _subject(answer: Any, audiences: tuple[str, ...]) -> Subject | None:
    status = answer.status
    if status is None or not status.authenticated or status.user is None:
        return None
    if audiences and not set(status.audiences or ()) & set(audiences):
        return None
    user = status.user
    if not user.username:
        return None
    return Subject(
        user=str(user.username),
        uid=str(user.uid or ""),
        groups=tuple(str(group) for group in user.groups or ()),
        authenticated_by="kubernetes",
    )
