"""`meshplane apply MESH OP`: run an operation through the coordinator.

``--wait`` follows the operation's events live and exits non-zero when it does not succeed,
printing the error's code, message, probable cause and remediation. ``--dry-run`` asks for a
server-side dry run and lists what would change. ``--delete`` undoes the operation, after a
confirmation on a terminal (``-y`` skips it).

The command names each operation itself (a new id unless ``--operation-id`` gives one), so when
the coordinator's answer never arrives (Ctrl-C, ``--call-timeout``) it can say which operation
may have started and how to look at it or re-send it safely: a re-sent id runs at most once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from typing import Any

import grpc

from coordinator.client.channel import EXIT_INTERRUPTED, duration_flag
from coordinator.client.dry_run_output import DRY_RUN_SECONDS, print_dry_run
from coordinator.client.follow import state_name, wait_for_operation
from coordinator.client.operation_flags import (
    UsageError,
    add_request_flags,
    custom_body,
    parameters,
)
from coordinator.client.output import as_dict, print_document, print_stream_document
from coordinator.client.subcommands import ClientSubcommands
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `apply` to `meshplane`."""
    apply = ClientSubcommands(subparsers).add(
        "apply", _apply, "run an operation through the coordinator"
    )
    apply.add_argument("mesh", metavar="MESH")
    apply.add_argument("operation", metavar="OP", help="catalogue id (see `meshplane ops MESH`)")
    add_request_flags(apply)
    _add_change_flags(apply)
    _add_tracking_flags(apply)


def _add_change_flags(apply: argparse.ArgumentParser) -> None:
    """What the operation changes: create the namespace, delete, purge CRDs, only a dry run."""
    apply.add_argument(
        "--create-namespace",
        action="store_true",
        help="create the namespace when it does not exist (install creates its own)",
    )
    apply.add_argument("--delete", action="store_true", help="undo the operation")
    apply.add_argument(
        "--purge-crds",
        action="store_true",
        help="with --delete: remove the release's CRDs too (kept by default; refused while "
        "custom resources of them exist: --param purge-crds=force removes them anyway)",
    )
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="server-side dry run: list what would be created, changed or deleted; change "
        "nothing and record nothing",
    )
    apply.add_argument(
        "--yes", "-y", action="store_true", help="with --delete: do not ask for confirmation"
    )


def _add_tracking_flags(apply: argparse.ArgumentParser) -> None:
    """How the operation is followed and recorded: wait, id, deadline, user."""
    apply.add_argument(
        "--wait", action="store_true", help="follow progress; exit non-zero unless it succeeds"
    )
    apply.add_argument(
        "--verbose", "-v", action="store_true", help="with --wait: every object's step too"
    )
    apply.add_argument("--operation-id", default="", help="idempotency key (default: assigned)")
    apply.add_argument(
        "--timeout",
        type=duration_flag,
        default=None,
        metavar="DURATION",
        help="operation deadline, readiness waits included, e.g. 90s, 5m (default: the adapter's)",
    )
    apply.add_argument(
        "--user",
        default="",
        help="who asks; the coordinator refuses a name other than the authenticated caller's "
        "(default: left to the coordinator, which records the authenticated caller)",
    )


def _switch_params(args: argparse.Namespace) -> dict[str, str]:
    """The parameters flags stand for (``--create-namespace``: ``create-namespace=true``,
    ``--purge-crds``: ``purge-crds=true``)."""
    if args.purge_crds and not args.delete:
        raise UsageError("--purge-crds only applies with --delete")
    switches = {"create-namespace": args.create_namespace, "purge-crds": args.purge_crds}
    return {name: "true" for name, on in switches.items() if on}


def _apply_request(args: argparse.Namespace) -> cpb.ApplyOperationRequest:
    body = custom_body(args)
    # A dry run records nothing, so it needs no id; anything else is named here, before sending.
    operation_id = args.operation_id or ("" if args.dry_run else str(uuid.uuid4()))
    request = apb.ApplyOperationRequest(
        operation_id=operation_id,
        operation=args.operation,
        mesh_version=args.mesh_version,
        namespace=args.namespace,
        delete=args.delete,
        custom_body=body,
        parameters=_switch_params(args) | parameters(args.param),
        username=args.user,
        dry_run=args.dry_run,
    )
    if args.timeout is not None:
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        request.timeout.FromNanoseconds(int(args.timeout * 1e9))
    return cpb.ApplyOperationRequest(mesh=args.mesh, request=request)


def _confirmed(args: argparse.Namespace) -> bool:
    """A destructive apply on a terminal asks first (``-y`` skips it; scripts are not asked)."""
    if not args.delete or args.yes or not sys.stdin.isatty():
        return True
    where = f" in namespace {args.namespace}" if args.namespace else ""
    question = (
        f"delete what {args.mesh} {args.operation} created{where}? "
        "its objects are removed from the cluster [y/N] "
    )
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _answer_lost(operation_id: str, why: str) -> None:
    """Say that the operation may have started, and how to look at it or re-send it."""
    print(
        f"{why}: operation {operation_id} may or may not have started\n"
        f"  look at it:  meshplane get {operation_id}\n"
        f"  re-send it:  the same command with --operation-id {operation_id} "
        "(an id runs at most once)",
        file=sys.stderr,
        flush=True,
    )


def _print_accepted(response: cpb.ApplyOperationResponse, args: argparse.Namespace) -> None:
    """The operation was accepted and is not followed: its id and how to wait for it."""
    if args.output != "table":
        print_document(as_dict(response), args.output)
        return
    operation_id = response.operation_id
    state = state_name(response.operation.operation.state)
    print(f"operation {operation_id} {state} on {response.operation.adapter_address}")
    print(f"wait for it with: meshplane wait {operation_id}")


async def _apply(stub: Any, args: argparse.Namespace) -> int:
    if args.dry_run:
        # Answered once every write was tried with dryRun=All: give it the operation's time.
        seconds = DRY_RUN_SECONDS if args.timeout is None else args.timeout + args.call_timeout
        answer = await stub.ApplyOperation(_apply_request(args), timeout=seconds)
        return print_dry_run(answer, args.output)
    if not _confirmed(args):
        print("not deleted", file=sys.stderr)
        return EXIT_INTERRUPTED
    request = _apply_request(args)
    try:
        response = await stub.ApplyOperation(request, timeout=args.call_timeout)
    except asyncio.CancelledError:  # Ctrl-C cancels the command (`ctrl_c`); it exits 130
        _answer_lost(request.request.operation_id, "interrupted before the coordinator answered")
        raise
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            why = f"no answer within --call-timeout {args.call_timeout:g}s"
            _answer_lost(request.request.operation_id, why)
        raise
    if not args.wait:
        _print_accepted(response, args)
        return 0
    if args.output != "table":
        print_stream_document(as_dict(response), args.output)
    else:
        print(f"operation {response.operation_id} accepted by {response.operation.adapter_address}")
    return await wait_for_operation(
        stub,
        response.operation_id,
        call_timeout=args.call_timeout,
        limit=None if args.timeout is None else args.timeout + args.call_timeout,
        output=args.output,
        verbose=args.verbose,
    )
