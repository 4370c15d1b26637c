"""Who the client commands say they are: a bearer token sent with every call.

The token comes from ``--token``, ``--token-file``, ``$MESHPLANE_TOKEN`` or
``$MESHPLANE_TOKEN_FILE``, in that order; failing those, from the sandbox `meshplane up`
registered for the coordinator address being dialled (``<config dir>/sandboxes/``, where the
config dir is ``$MESHPLANE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/meshplane``, else
``~/.config/meshplane``). A client certificate (``--tls-cert``) identifies the caller too.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc.aio

__all__ = [
    "CONFIG_DIR_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "CredentialsError",
    "bearer_token_interceptors",
    "config_dir",
    "read_token_file",
    "register_sandbox",
    "resolve_token",
    "sandbox_entry_path",
]

TOKEN_ENV = "MESHPLANE_TOKEN"
TOKEN_FILE_ENV = "MESHPLANE_TOKEN_FILE"
CONFIG_DIR_ENV = "MESHPLANE_CONFIG_DIR"
_MAX_TOKEN_BYTES = 16 * 1024


class CredentialsError(ValueError):
    """A token was asked for but cannot be read (a usage error)."""


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where the client keeps what `meshplane up` registered."""
    env = os.environ if environ is None else environ
    if env.get(CONFIG_DIR_ENV):
        return Path(env[CONFIG_DIR_ENV])
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "meshplane"
    return Path.home() / ".config" / "meshplane"


def sandbox_entry_path(address: str, environ: Mapping[str, str] | None = None) -> Path:
    """The file naming the token of the sandbox whose coordinator listens at ``address``."""
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", address)
    return config_dir(environ) / "sandboxes" / f"{safe}.json"


def register_sandbox(
    address: str, token_file: Path, environ: Mapping[str, str] | None = None
) -> Path:
    """Tell clients on this machine which token the sandbox at ``address`` accepts."""
    path = sandbox_entry_path(address, environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    document = {"coordinator": address, "token_file": str(token_file.absolute())}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document) + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)
    return path


def read_token_file(path: Path) -> str:
    """The first line of a token file, stripped; CredentialsError when unusable."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(_MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise CredentialsError(f"cannot read token file {path}: {exc.strerror}") from exc
    if len(raw) > _MAX_TOKEN_BYTES:
        raise CredentialsError(f"token file {path} is larger than {_MAX_TOKEN_BYTES} bytes")
    lines = raw.decode("utf-8", errors="replace").strip().splitlines()
    if not lines or not lines[0].strip():
        raise CredentialsError(f"token file {path} is empty")
    return lines[0].strip()


def _sandbox_token(address: str, environ: Mapping[str, str]) -> str | None:
    path = sandbox_entry_path(address, environ)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        token_file = Path(str(document["token_file"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not token_file.is_file():
        return None
    try:
        return read_token_file(token_file)
    except CredentialsError:
        return None


def resolve_token(
    *,
    token: str | None,
    token_file: Path | None,
    address: str,
    environ: Mapping[str, str] | None = None,
) -> str | None:
    """The token to send to ``address`` (None: none configured)."""
    env = os.environ if environ is None else environ
    if token:
        return token.strip()
    if token_file is not None:
        return read_token_file(token_file)
    if env.get(TOKEN_ENV):
        return env[TOKEN_ENV].strip()
    if env.get(TOKEN_FILE_ENV):
        return read_token_file(Path(env[TOKEN_FILE_ENV]))
    return _sandbox_token(address, env)


def _with_token(details: Any, header: tuple[str, str]) -> Any:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(*header)
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryToken(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


class _StreamToken(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, header: tuple[str, str]) -> None:
        self._header = header

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._header), request)


def bearer_token_interceptors(token: str) -> list[Any]:
    """Channel interceptors adding ``authorization: Bearer <token>`` to every unary and
    server-streaming call (grpc.aio files an interceptor under one call kind only)."""
    header = ("authorization", f"Bearer {token}")
    return [_UnaryToken(header), _StreamToken(header)]
