"""How a client command reaches the coordinator: address, TLS flags, dialing, failures as one line.

Every client command dials ``--coordinator`` (else ``$MESHPLANE_COORDINATOR``, else
127.0.0.1:10100), with TLS when ``--tls-ca``/``--tls-cert`` are given (plaintext is only allowed
on loopback unless ``--allow-insecure``) and a bearer token when one is configured
(``client_credentials``), and reports transport problems as one readable line
with the usual exit codes, so `meshplane perf` and the other client commands behave alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from coordinator.client.contexts import ContextError, apply_context
from coordinator.client.credentials import (
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    CredentialsError,
    bearer_token_interceptors,
    resolve_token,
)
from coordinator.client.ctrl_c import ctrl_c_cancels
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving.durations import duration_argument
from serving.tls import InsecureTransportError, add_client_tls_arguments, client_tls_from_args, dial

__all__ = [
    "COORDINATOR_ENV",
    "DEFAULT_COORDINATOR",
    "EXIT_BROKEN_PIPE",
    "EXIT_DENIED",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_FOUND",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "Command",
    "add_connection_arguments",
    "coordinator_address",
    "duration_flag",
    "exit_code_for",
    "run_client_command",
    "run_on_coordinator",
]

COORDINATOR_ENV = "MESHPLANE_COORDINATOR"
DEFAULT_COORDINATOR = "127.0.0.1:10100"

EXIT_FAILED = 1
"""The operation failed (or was cancelled), or the coordinator refused the request."""
EXIT_USAGE = 2
"""A flag or argument the command cannot use, or a request the coordinator found invalid."""
EXIT_NOT_FOUND = 3
"""The operation, mesh or result named does not exist."""
EXIT_UNAVAILABLE = 4
"""No coordinator answered (or it answered too late)."""
EXIT_DENIED = 5
"""Not authenticated, or not allowed to do this."""
EXIT_INTERRUPTED = 130
"""128 + SIGINT: Ctrl-C."""
EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE, what a shell reports for a writer whose reader (``head``) went away."""

Command = Callable[[Any, argparse.Namespace], Awaitable[int]]
"""A client command: given a CoordinatorService stub and the parsed flags, an exit code."""


duration_flag = duration_argument
"""An argparse type: a Go-style duration (``90s``, ``5m``, ``1h30m``; bare numbers are seconds)."""


def add_connection_arguments(
    parser: argparse.ArgumentParser, *, call_timeout_help: str
) -> argparse._ArgumentGroup:
    """Add ``--coordinator``, ``--call-timeout`` and the client TLS flags.

    Returns the "coordinator connection" group, so a command can add flags of its own there.
    """
    group = parser.add_argument_group("coordinator connection")
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        default=None,
        help=f"coordinator address [env {COORDINATOR_ENV}, default {DEFAULT_COORDINATOR}]",
    )
    group.add_argument(
        "--call-timeout",
        type=duration_flag,
        default=30.0,
        metavar="DURATION",
        help=call_timeout_help,
    )
    group.add_argument(
        "--context",
        default=None,
        metavar="NAME",
        help="coordinator context from the client config (see `meshplane config`) "
        "[env MESHPLANE_CONTEXT, default: its current-context]",
    )
    group.add_argument(
        "--token",
        default=None,
        metavar="TOKEN",
        help=f"bearer token to authenticate with [env {TOKEN_ENV}; default: the token of the "
        "`meshplane up` sandbox at that address, if any]",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"read the bearer token from PATH [env {TOKEN_FILE_ENV}]",
    )
    add_client_tls_arguments(parser)
    return group


def coordinator_address(args: argparse.Namespace) -> str:
    """``--coordinator``, else ``$MESHPLANE_COORDINATOR``, else the local default."""
    return str(args.coordinator or os.environ.get(COORDINATOR_ENV) or DEFAULT_COORDINATOR)


def run_on_coordinator(
    command: Command,
    args: argparse.Namespace,
    *,
    fail: Callable[[str, int], int],
    unavailable_hint: str,
    usage_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Dial, run ``command`` on a CoordinatorService stub, and turn failures into one line.

    ``fail(message, exit_code)`` reports and returns the code: bad TLS flags, plaintext to a
    remote address and ``usage_errors`` are usage errors; an RPC error is a failure, and when
    the coordinator is unreachable the message adds ``unavailable_hint``.
    """
    try:
        apply_context(args)
    except ContextError as exc:
        return fail(str(exc), EXIT_USAGE)
    address = coordinator_address(args)
    try:
        tls = client_tls_from_args(args)
        token = resolve_token(token=args.token, token_file=args.token_file, address=address)
    except ValueError as exc:  # CredentialsError included
        return fail(str(exc), EXIT_USAGE)
    interceptors = None if token is None else bearer_token_interceptors(token)

    async def main() -> int:
        channel = dial(
            address, tls=tls, allow_insecure=args.allow_insecure, interceptors=interceptors
        )
        this = asyncio.current_task()
        assert this is not None  # asyncio.run runs main as a task
        with ctrl_c_cancels(this):
            async with channel:
                return await command(cpb_grpc.CoordinatorServiceStub(channel), args)

    usage: tuple[type[Exception], ...] = (InsecureTransportError, CredentialsError, *usage_errors)
    try:
        return asyncio.run(main())
    except usage as exc:
        return fail(str(exc), EXIT_USAGE)
    except grpc.RpcError as exc:
        code = exc.code()
        text = f"{code.name}: {exc.details()}"
        if code == grpc.StatusCode.UNAVAILABLE:
            text += f" (is a coordinator listening at {address}? {unavailable_hint})"
        elif code == grpc.StatusCode.UNIMPLEMENTED:
            text = _not_a_coordinator(address, tls, args.allow_insecure) or text
        return fail(text, exit_code_for(code))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C (`ctrl_c_cancels`)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _reader_gone()


def run_client_command(
    command: Command, args: argparse.Namespace, *, usage_errors: tuple[type[Exception], ...] = ()
) -> int:
    """`run_on_coordinator` for a `meshplane` client command: failures as one line on stderr,
    prefixed with the command's name."""

    def fail(message: str, code: int) -> int:
        print(f"meshplane {args.command}: {message}", file=sys.stderr)
        return code

    return run_on_coordinator(
        command,
        args,
        fail=fail,
        unavailable_hint=f"start one with `meshplane up`, or set --coordinator / {COORDINATOR_ENV}",
        usage_errors=usage_errors,
    )


_EXIT_BY_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.OUT_OF_RANGE: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.PERMISSION_DENIED: EXIT_DENIED,
    grpc.StatusCode.UNAUTHENTICATED: EXIT_DENIED,
}


def exit_code_for(code: Any) -> int:
    """The documented exit code for a gRPC status a command ended with."""
    return _EXIT_BY_STATUS.get(code, EXIT_FAILED)


def _not_a_coordinator(address: str, tls: Any, allow_insecure: bool) -> str | None:
    """When ``address`` answers as a meshplane adapter, the sentence that says so, else None.

    An UNIMPLEMENTED answer to a coordinator call usually means the address is an adapter's
    (they listen on 10000+); one GetInfo call tells, and names the mesh.
    """

    async def probe() -> str | None:
        channel = dial(address, tls=tls, allow_insecure=allow_insecure)
        async with channel:
            try:
                info = await apb_grpc.MeshAdapterServiceStub(channel).GetInfo(
                    apb.GetInfoRequest(), timeout=5
                )
            except grpc.RpcError:
                return None
        mesh = str(info.mesh)[:40]
        return (
            f"{address} is a meshplane adapter (mesh {mesh!r}), not a coordinator: point "
            f"--coordinator (or {COORDINATOR_ENV}) at the coordinator, {DEFAULT_COORDINATOR} "
            "in the sandbox"
        )

    try:
        return asyncio.run(probe())
    except (grpc.RpcError, OSError, ValueError):
        return None


def _reader_gone() -> int:
    """Stdout's reader closed early (``| head``): stop quietly, like other Unix tools.

    Stdout is pointed at /dev/null so the interpreter's final flush cannot fail again and
    print a traceback on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE
