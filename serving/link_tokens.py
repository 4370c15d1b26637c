"""The coordinator-adapter link token: a shared secret in a file, and the proof of holding it.

An adapter started with ``--coordinator-token-file`` accepts calls (other than health and
reflection) only with ``authorization: Bearer <token>``. The coordinator (``--adapter-token-file``,
the same token) sends it only to an adapter that proved it holds the token first: it calls
GetInfo with a random nonce in :data:`CHALLENGE_HEADER` and no token; a genuine adapter refuses
that call (UNAUTHENTICATED) with :func:`link_proof` of the nonce in :data:`PROOF_HEADER` of the
trailing metadata. A process without the token cannot answer the challenge, and never receives
the token or a request.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

__all__ = [
    "AUTHORIZATION_HEADER",
    "CHALLENGE_HEADER",
    "MIN_TOKEN_LENGTH",
    "PROOF_HEADER",
    "LinkTokenError",
    "bearer",
    "link_proof",
    "new_nonce",
    "presents_token",
    "read_link_token",
    "write_link_token",
]

AUTHORIZATION_HEADER = "authorization"
CHALLENGE_HEADER = "x-meshplane-link-challenge"
PROOF_HEADER = "x-meshplane-link-proof"
MIN_TOKEN_LENGTH = 16
_PROOF_LABEL = b"meshplane-link-proof-v1\x00"


class LinkTokenError(ValueError):
    """The token file cannot be used; the message names the file and the fix."""


def read_link_token(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace removed).

    Refused: a missing or unreadable file, one anybody on the host may read, an empty token or
    one shorter than :data:`MIN_TOKEN_LENGTH` characters.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkTokenError(f"cannot read the link token file {path}: {exc}") from exc
    if mode & stat.S_IROTH:
        raise LinkTokenError(
            f"the link token file {path} is readable by every user of the host; "
            f"chmod o-r {path} (0600 or 0440)"
        )
    token = text.strip()
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise LinkTokenError(
            f"the link token in {path} must be one word of at least {MIN_TOKEN_LENGTH} "
            "characters (e.g. the output of `openssl rand -hex 32`)"
        )
    return token


def write_link_token(path: Path) -> str:
    """A new random token written to ``path`` with mode 0600 (replacing any earlier one)."""
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token + "\n")
    path.chmod(0o600)
    return token


def bearer(token: str) -> str:
    """The ``authorization`` metadata value presenting ``token``."""
    return f"Bearer {token}"


def presents_token(authorization: str, token: str) -> bool:
    """True when an ``authorization`` value is exactly ``Bearer <token>`` (constant time)."""
    return hmac.compare_digest(authorization.encode(), bearer(token).encode())


def new_nonce() -> str:
    """A fresh random challenge."""
    return secrets.token_urlsafe(24)


def link_proof(token: str, nonce: str) -> str:
    """What an adapter holding ``token`` answers to the challenge ``nonce``."""
    return hmac.new(token.encode(), _PROOF_LABEL + nonce.encode(), hashlib.sha256).hexdigest()
