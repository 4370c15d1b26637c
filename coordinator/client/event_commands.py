"""`meshplane events`: recorded events of every adapter, then (``--follow``) live ones.

Each event prints as one line (cursor, time, mesh, severity, operation, where and what), or as
one JSON/YAML document per event for scripts. ``--operation ID --follow`` ends at that
operation's final event.
"""

from __future__ import annotations

import argparse
from typing import Any

from coordinator.client.channel import duration_flag
from coordinator.client.follow import TERMINAL, watch_events
from coordinator.client.operation_flags import UsageError
from coordinator.client.output import as_dict, local_time, print_stream_document
from coordinator.client.subcommands import ClientSubcommands
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]

_EVENT_HEADER = ("CURSOR", "TIME", "MESH", "SEVERITY", "OPERATION", "MESSAGE")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `events` to `meshplane`."""
    events = ClientSubcommands(subparsers).add(
        "events", _events, "show recorded events; --follow keeps watching", listing=True
    )
    events.add_argument(
        "--follow",
        "-F",
        action="store_true",
        help="keep watching live events (with --operation: until the operation ends)",
    )
    events.add_argument("--operation", default="", metavar="ID", help="only this operation")
    events.add_argument("--mesh", default="", help="only this mesh")
    events.add_argument(
        "--severity", choices=("info", "warning", "error"), default=None, help="at least this"
    )
    events.add_argument(
        "--after", type=int, default=0, metavar="CURSOR", help="only events after this cursor"
    )
    events.add_argument(
        "--idle",
        type=duration_flag,
        default=1.0,
        metavar="DURATION",
        help="without --follow: stop once no event arrived for this long (default 1s)",
    )


def _severity_name(value: int) -> str:
    return str(apb.EventSeverity.Name(apb.EventSeverity.ValueType(value))).removeprefix(
        "EVENT_SEVERITY_"
    )


def _event_line(response: cpb.WatchEventsResponse) -> str:
    event = response.event
    where = " ".join(part for part in (event.cluster, event.component) if part)
    prefix = f"{response.cursor:>6}  {local_time(event.timestamp):<20}  {response.mesh:<8} "
    prefix += f"{_severity_name(event.severity):<8} {event.operation_id or '-':<12}"
    return f"{prefix}  {where + ': ' if where else ''}{event.summary}"


def _header_line() -> str:
    cursor, at, mesh, severity, operation, message = _EVENT_HEADER
    return f"{cursor:>6}  {at:<20}  {mesh:<8} {severity:<8} {operation:<12}  {message}"


def _print_event(response: cpb.WatchEventsResponse, output: str) -> None:
    if output in ("json", "yaml"):
        print_stream_document(as_dict(response), output)
    elif output == "name":
        print(f"event/{response.cursor}", flush=True)
    else:
        print(_event_line(response), flush=True)


async def _events(stub: Any, args: argparse.Namespace) -> int:
    if args.after < 0:
        raise UsageError("--after must not be negative")
    severity = (
        apb.EventSeverity.Value(f"EVENT_SEVERITY_{args.severity.upper()}")
        if args.severity
        else apb.EVENT_SEVERITY_UNSPECIFIED
    )
    until_end = bool(args.operation and args.follow)
    idle = None if args.follow else args.idle
    if args.operation:
        # An unknown id would otherwise match nothing and look like "no events yet".
        found = await stub.GetOperation(
            cpb.GetOperationRequest(operation_id=args.operation), timeout=args.call_timeout
        )
        if until_end and found.operation.operation.state in TERMINAL:
            idle = args.idle  # already over: its events are all recorded, replay and stop
    # Following one operation ends at its final event, so every severity is asked for and
    # the --severity filter applies here.
    request = cpb.WatchEventsRequest(
        mesh=args.mesh,
        operation_id=args.operation,
        after_cursor=args.after,
        min_severity=apb.EVENT_SEVERITY_UNSPECIFIED if until_end else severity,
    )

    header = args.output in ("table", "wide") and not args.no_headers

    def show(response: cpb.WatchEventsResponse) -> bool:
        nonlocal header
        if response.event.severity >= severity:
            if header:
                print(_header_line())
                header = False
            _print_event(response, args.output)
        return until_end and response.event.operation_state in TERMINAL

    await watch_events(stub, request, idle=idle, on_event=show)
    return 0
