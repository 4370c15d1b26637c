"""Callers for coordinator tests: a token file with one user per role, and channels as them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from coordinator.client.credentials import bearer_token_interceptors
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc


@dataclass(frozen=True, kw_only=True)
class Caller:
    """One token-file user."""

    token: str
    user: str
    uid: str
    groups: tuple[str, ...]


CALLERS: dict[str, Caller] = {
    "viewer": Caller(
        token="viewer-3f9a1c", user="vera", uid="uid-vera", groups=("meshplane:viewers",)
    ),
    "operator": Caller(
        token="operator-8b2d47",
        user="otto",
        uid="uid-otto",
        groups=("meshplane:operators", "team-a"),
    ),
    "admin": Caller(token="admin-51e0c9", user="ada", uid="uid-ada", groups=("meshplane:admins",)),
    "nobody": Caller(token="nobody-77aa01", user="nina", uid="uid-nina", groups=("team-b",)),
}
ADMIN = CALLERS["admin"]


def token_line(caller: Caller) -> str:
    """The caller's line in kube-apiserver CSV form."""
    return f'{caller.token},{caller.user},{caller.uid},"{",".join(caller.groups)}"'


def write_token_file(directory: Path, callers: list[Caller] | None = None) -> Path:
    """A token file (mode 0600) holding every caller of :data:`CALLERS` (or those given)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokens.csv"
    lines = [token_line(c) for c in (callers if callers is not None else CALLERS.values())]
    path.write_text("# token,user,uid,groups\n" + "\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def channel_as(address: str, caller: Caller | None = ADMIN, **options: Any) -> Any:
    """A plaintext channel whose calls carry ``caller``'s token (None: no credentials)."""
    interceptors = None if caller is None else bearer_token_interceptors(caller.token)
    return grpc.aio.insecure_channel(address, interceptors=interceptors, **options)


async def status_with_token(address: str, method: str, message: Any, token: str) -> Any:
    """(status code, details) of the coordinator's ``method`` (a stub method name) called with
    bearer ``token`` (OK, "" when it succeeds)."""
    async with grpc.aio.insecure_channel(
        address, interceptors=bearer_token_interceptors(token)
    ) as channel:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        try:
            await getattr(stub, method)(message, timeout=10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
    return grpc.StatusCode.OK, ""
