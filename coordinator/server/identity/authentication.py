"""Who is calling: a bearer token (token file, then TokenReview), else a client certificate.

A call carrying ``authorization: Bearer <token>`` is authenticated by that token alone: the
token file first, then Kubernetes TokenReview; a token neither knows is UNAUTHENTICATED (no
fall-back to the certificate, so a revoked token never quietly becomes another identity).
Without a token, a verified client certificate's subject is used (``--tls-client-ca``). A call
with neither is anonymous, accepted only with ``--allow-anonymous``. Where no token authenticator
is configured a bearer token is ignored, as kube-apiserver does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from coordinator.server.identity.certificates import subject_from_auth_context
from coordinator.server.identity.subjects import ANONYMOUS, Subject
from coordinator.server.identity.token_file import TokenFile

__all__ = [
    "AuthenticationError",
    "Authenticator",
    "ReviewUnavailable",
    "TokenReviewer",
    "bearer_token",
]

AUTHORIZATION_HEADER = "authorization"
_MAX_TOKEN_CHARS = 16 * 1024


class AuthenticationError(Exception):
    """The call cannot be authenticated; the message tells the caller how to."""


class ReviewUnavailable(Exception):
    """Kubernetes could not answer a TokenReview or SubjectAccessReview (UNAVAILABLE)."""


class TokenReviewer(Protocol):
    """Asks someone else whether a token is valid (Kubernetes TokenReview)."""

    async def review(self, token: str) -> Subject | None:
        """The token's subject, or None when it is not valid."""
        ...


def bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    """The token of the call's ``authorization: Bearer <token>`` (None without the header)."""
    values = [value for key, value in metadata if key == AUTHORIZATION_HEADER]
    if not values:
        return None
    if len(values) > 1:
        raise AuthenticationError("send one authorization header, not several")
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the authorization header must be 'Bearer <token>'")
    if len(token) > _MAX_TOKEN_CHARS:
        raise AuthenticationError(f"the bearer token is longer than {_MAX_TOKEN_CHARS} characters")
    return token


@dataclass(frozen=True, kw_only=True)
class Authenticator:
    """The configured ways to prove who you are, tried in a fixed order."""

    token_file: TokenFile | None = None
    token_reviewer: TokenReviewer | None = None
    client_certificates: bool = False
    allow_anonymous: bool = False

    @property
    def configured(self) -> bool:
        """True when any way to authenticate is configured."""
        return bool(self.token_file or self.token_reviewer or self.client_certificates)

    def how_to(self) -> str:
        """What an unauthenticated caller should send."""
        ways = []
        if self.token_file is not None or self.token_reviewer is not None:
            ways.append(
                "metadata 'authorization: Bearer <token>' (meshplane --token, --token-file or "
                "MESHPLANE_TOKEN)"
            )
        if self.client_certificates:
            ways.append("a client certificate signed by the coordinator's client CA")
        return " or ".join(ways)

    async def authenticate(
        self,
        metadata: Sequence[tuple[str, str | bytes]],
        auth_context: Mapping[str, Sequence[bytes]],
    ) -> Subject:
        """The caller's subject; raises AuthenticationError saying how to authenticate."""
        token = bearer_token(metadata)
        if token is not None and (self.token_file or self.token_reviewer):
            if self.token_file is not None:
                subject = self.token_file.authenticate(token)
                if subject is not None:
                    return subject
            if self.token_reviewer is not None:
                subject = await self.token_reviewer.review(token)
                if subject is not None:
                    return subject
            raise AuthenticationError("the bearer token is not valid (unknown, expired or revoked)")
        if self.client_certificates:
            subject = subject_from_auth_context(auth_context)
            if subject is not None:
                return subject
        if self.allow_anonymous:
            return ANONYMOUS
        raise AuthenticationError(f"authentication required: send {self.how_to()}")
