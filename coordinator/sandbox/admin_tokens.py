"""The sandbox admin's bearer token: ``<data-dir>/auth/admin.token`` and the coordinator's
``tokens.csv`` naming it (both mode 0600, made on first use and kept across runs)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["SANDBOX_ADMIN_GROUP", "admin_token_file", "coordinator_token_file"]

SANDBOX_ADMIN_GROUP = "meshplane:admins"
_TOKEN_BYTES = 32


def admin_token_file(data_dir: Path) -> Path:
    """The sandbox admin's bearer token (one line, mode 0600)."""
    return data_dir / "auth" / "admin.token"


def coordinator_token_file(data_dir: Path) -> Path:
    """The coordinator's token file, with the sandbox admin's token (made once, then kept)."""
    directory = data_dir / "auth"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = directory / "tokens.csv"
    admin = admin_token_file(data_dir)
    if not admin.exists() or not tokens.exists():
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        _write_private(admin, token + "\n")
        _write_private(tokens, f'{token},sandbox-admin,sandbox-admin,"{SANDBOX_ADMIN_GROUP}"\n')
    return tokens


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (never briefly by others)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)
