"""`meshplane get|wait|cancel OPERATION_ID`, and `meshplane version`.

``get|wait|cancel`` take one operation by the id `apply` printed.

``get`` shows the operation as recorded; ``wait`` follows it to its end like ``apply --wait``
(exit 0 only when it succeeded); ``cancel`` asks its adapter to stop it, after a confirmation on
a terminal (``-y`` skips it). ``version`` prints the client's version, the coordinator's and
every adapter replica's. Exit codes are the client's (see `coordinator.client.channel`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from coordinator.client.channel import (
    EXIT_USAGE,
    Command,
    add_connection_arguments,
    duration_flag,
    run_client_command,
)
from coordinator.client.follow import print_failure, state_name, wait_for_operation
from coordinator.client.hints import with_hints
from coordinator.client.output import as_dict, local_time, print_document
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from serving.build_info import package_version

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `get`, `wait` and `cancel` to `meshplane`."""
    common = argparse.ArgumentParser(add_help=False)
    group = add_connection_arguments(common, call_timeout_help="deadline of each request")
    group.add_argument(
        "--output",
        "-o",
        choices=("table", "json", "yaml"),
        default="table",
        help="table, json or yaml",
    )

    def add(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, parents=[common], help=help, description=help)
        parser.add_argument("operation_id", metavar="OPERATION_ID", help="as `apply` printed it")
        parser.set_defaults(run=lambda args: run_client_command(with_hints(command), args))
        return parser

    add("get", _get, "show one operation: state, clusters, error, times")
    wait = add("wait", _wait, "follow an operation to its end; exit 0 only if it succeeded")
    wait.add_argument(
        "--timeout",
        type=duration_flag,
        default=None,
        metavar="DURATION",
        help="give up waiting after this long, e.g. 10m (the operation goes on)",
    )
    wait.add_argument("--verbose", "-v", action="store_true", help="every object's step too")
    cancel = add("cancel", _cancel, "stop a running operation")
    cancel.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")

    version = subparsers.add_parser(
        "version",
        parents=[common],
        help="print the versions of this client, the coordinator and each adapter",
        description="print the versions of this client, the coordinator and each adapter",
    )
    version.add_argument(
        "--client", action="store_true", help="only this client's version (no coordinator call)"
    )
    version.set_defaults(run=_version)


def _version(args: argparse.Namespace) -> int:
    client = package_version()
    if args.client:
        if args.output == "table":
            print(f"client: {client}")
        else:
            print_document({"client": client}, args.output)
        return 0
    if args.output == "table":
        print(f"client:       {client}", flush=True)
    return run_client_command(with_hints(lambda stub, a: _server_versions(stub, a, client)), args)


async def _server_versions(stub: Any, args: argparse.Namespace, client: str) -> int:
    listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=args.call_timeout)
    if args.output != "table":
        adapters = [
            {"mesh": adapter.mesh, "address": replica.address, "version": replica.adapter_version}
            for adapter in listed.adapters
            for replica in adapter.replicas
        ]
        document = {
            "client": client,
            "coordinator": listed.coordinator_version,
            "adapters": adapters,
        }
        print_document(document, args.output)
        return 0
    print(f"coordinator:  {listed.coordinator_version or 'unknown (older than 0.1.0)'}")
    for adapter in listed.adapters:
        for replica in adapter.replicas:
            version = replica.adapter_version or "unknown (not reached yet)"
            print(f"adapter:      {adapter.mesh} {replica.address} {version}")
    return 0


async def _get(stub: Any, args: argparse.Namespace) -> int:
    reply = await stub.GetOperation(
        cpb.GetOperationRequest(operation_id=args.operation_id), timeout=args.call_timeout
    )
    if args.output != "table":
        print_document(as_dict(reply), args.output)
        return 0
    record = reply.operation
    operation = record.operation
    rows = [
        ("operation id", operation.operation_id),
        ("mesh", record.mesh),
        ("operation", operation.operation + (" (delete)" if operation.delete else "")),
        ("state", state_name(operation.state)),
        ("version", operation.mesh_version),
        ("namespace", operation.namespace),
        ("user", operation.username),
        ("adapter", record.adapter_address),
        ("created", local_time(operation.create_time)),
        ("started", local_time(operation.start_time)),
        ("ended", local_time(operation.end_time)),
    ]
    for label, value in rows:
        if value:
            print(f"{label + ':':<14}{value}")
    for result in operation.cluster_results:
        counts = (
            f"{result.objects_applied} applied, {result.objects_deleted} deleted, "
            f"{result.objects_unchanged} unchanged"
        )
        print(f"{'cluster:':<14}{result.cluster}: {state_name(result.state)} ({counts})")
    if operation.error.code or any(r.error.code for r in operation.cluster_results):
        print_failure(operation)
    return 0


async def _wait(stub: Any, args: argparse.Namespace) -> int:
    if args.timeout is not None and args.timeout <= 0:
        print("meshplane wait: --timeout must be positive", file=sys.stderr)
        return EXIT_USAGE
    # Unknown ids fail here (NOT_FOUND, exit 3) rather than waiting for events that never come.
    await stub.GetOperation(
        cpb.GetOperationRequest(operation_id=args.operation_id), timeout=args.call_timeout
    )
    return await wait_for_operation(
        stub,
        args.operation_id,
        call_timeout=args.call_timeout,
        limit=args.timeout,
        output=args.output,
        verbose=args.verbose,
    )


async def _cancel(stub: Any, args: argparse.Namespace) -> int:
    found = await stub.GetOperation(
        cpb.GetOperationRequest(operation_id=args.operation_id), timeout=args.call_timeout
    )
    operation = found.operation.operation
    if operation.state not in (apb.OPERATION_STATE_PENDING, apb.OPERATION_STATE_RUNNING):
        print(
            f"meshplane cancel: operation {args.operation_id} already ended "
            f"({state_name(operation.state)}); nothing to cancel",
            file=sys.stderr,
        )
        return 0
    if not args.yes and sys.stdin.isatty():
        question = (
            f"cancel {found.operation.mesh} {operation.operation} "
            f"(operation {args.operation_id}, {state_name(operation.state)})? [y/N] "
        )
        print(question, end="", file=sys.stderr, flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("not cancelled", file=sys.stderr)
            return 0
    reply = await stub.CancelOperation(
        cpb.CancelOperationRequest(operation_id=args.operation_id), timeout=args.call_timeout
    )
    if args.output != "table":
        print_document(as_dict(reply), args.output)
    else:
        state = state_name(reply.operation.operation.state)
        print(f"operation {args.operation_id} {state}")
    return 0
