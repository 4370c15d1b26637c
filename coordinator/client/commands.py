"""Client commands against the coordinator: adapters, ops, versions, apply, status, events, history.

Every command dials ``--coordinator`` (else ``$MESHPLANE_COORDINATOR``, else 127.0.0.1:10100),
with TLS when ``--tls-ca``/``--tls-cert`` are given (plaintext is only allowed on loopback unless
``--allow-insecure``). ``--output json`` prints one JSON document, or JSON lines for streams.
``apply --wait`` follows the operation's events live and exits non-zero when it does not succeed,
printing the error's code, message, probable cause and remediation.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from coordinator.client.channel import (
    COORDINATOR_ENV,
    DEFAULT_COORDINATOR,
    EXIT_INTERRUPTED,
    Command,
    add_connection_arguments,
    duration_flag,
    run_client_command,
)
from coordinator.client.dry_run_output import DRY_RUN_SECONDS, print_dry_run
from coordinator.client.follow import TERMINAL, state_name, wait_for_operation, watch_events
from coordinator.client.hints import with_hints
from coordinator.client.operation_flags import (
    UsageError,
    add_request_flags,
    custom_body,
    parameters,
)
from coordinator.client.output import (
    Column,
    Listing,
    add_listing_arguments,
    as_dict,
    local_time,
    print_document,
    print_listing,
    print_stream_document,
    print_table,
)
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["COORDINATOR_ENV", "DEFAULT_COORDINATOR", "register"]

_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "interrupted")
_AUDIT_DECISIONS = {
    "allowed": cpb.AUDIT_DECISION_ALLOWED,
    "denied": cpb.AUDIT_DECISION_DENIED,
    "unauthenticated": cpb.AUDIT_DECISION_UNAUTHENTICATED,
}
_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _severity(value: int) -> str:
    return str(apb.EventSeverity.Name(apb.EventSeverity.ValueType(value))).removeprefix(
        "EVENT_SEVERITY_"
    )


def _replicastate_name(value: int) -> str:
    return str(cpb.ReplicaState.Name(cpb.ReplicaState.ValueType(value))).removeprefix(
        "REPLICA_STATE_"
    )


# -- registration -----------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Flags every client command shares."""
    common = argparse.ArgumentParser(add_help=False)
    add_connection_arguments(common, call_timeout_help="deadline of each request (default 30)")
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to `meshplane`."""
    common = _common()

    def add(
        name: str, command: Command, help: str, *, listing: bool = False
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(
            run=lambda args: run_client_command(
                with_hints(command), args, usage_errors=(UsageError,)
            )
        )
        output = parser.add_argument_group("output")
        if listing:
            add_listing_arguments(output)
        else:
            output.add_argument(
                "--output",
                "-o",
                choices=("table", "json", "yaml"),
                default="table",
                help="table for people (default), json or yaml for scripts",
            )
        return parser

    add(
        "adapters",
        _adapters,
        "list adapters, their replicas, health and event positions",
        listing=True,
    )

    ops = add("ops", _ops, "list the operations each mesh's adapter offers", listing=True)
    ops.add_argument("mesh", nargs="?", default="", metavar="MESH", help="only this mesh")

    versions = add("versions", _versions, "list the installable versions of a mesh", listing=True)
    versions.add_argument("mesh", metavar="MESH")

    apply = add("apply", _apply, "run an operation through the coordinator")
    apply.add_argument("mesh", metavar="MESH")
    apply.add_argument("operation", metavar="OP", help="catalogue id (see `meshplane ops MESH`)")
    add_request_flags(apply)
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

    status = add("status", _status, "show whether and how a mesh is installed")
    status.add_argument("mesh", metavar="MESH")
    status.add_argument("--namespace", "-n", default="", help="control plane namespace")

    events = add("events", _events, "show recorded events; --follow keeps watching", listing=True)
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

    history = add("history", _history, "list recorded operations, newest first", listing=True)
    history.add_argument("--mesh", default="", help="only this mesh")
    history.add_argument(
        "--state", default=None, choices=_STATES, help="only operations in this state"
    )
    history.add_argument("--user", default="", help="only operations this user asked for")
    history.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    history.add_argument(
        "--since",
        type=_time_flag,
        default=None,
        metavar="TIME",
        help="only operations recorded at or after TIME: ISO 8601 (UTC unless it has an "
        "offset) or an age such as 30m, 1h, 2d",
    )
    history.add_argument(
        "--until",
        type=_time_flag,
        default=None,
        metavar="TIME",
        help="only operations recorded before TIME (same forms as --since)",
    )
    history.add_argument(
        "--page-token",
        default="",
        metavar="TOKEN",
        help="continue from the token an earlier `history` printed",
    )
    history.add_argument(
        "--all", action="store_true", help="every matching operation (ignores --limit)"
    )

    audit = add(
        "audit",
        _audit,
        "list the audit trail: every mutating and every refused call (admins)",
        listing=True,
    )
    audit.add_argument("--user", default="", help="only calls by this user")
    audit.add_argument(
        "--decision", choices=tuple(_AUDIT_DECISIONS), default=None, help="only this decision"
    )
    audit.add_argument(
        "--since",
        type=_time_flag,
        default=None,
        metavar="TIME",
        help="only calls at or after TIME: ISO 8601 or an age such as 30m, 1h, 2d",
    )
    audit.add_argument(
        "--until", type=_time_flag, default=None, metavar="TIME", help="only calls before TIME"
    )
    audit.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    audit.add_argument("--all", action="store_true", help="every matching record")


# -- simple queries ---------------------------------------------------------------------------


async def _adapters(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=args.call_timeout)
    replicas = [(adapter, replica) for adapter in response.adapters for replica in adapter.replicas]
    listing = Listing(
        columns=[
            Column(header="MESH"),
            Column(header="ADDRESS"),
            Column(header="STATE"),
            Column(header="VERSION"),
            Column(header="EVENT STREAM", wide=True),
            Column(header="LAST EVENT", wide=True),
            Column(header="LAST ERROR"),
        ],
        rows=[
            [
                adapter.mesh,
                replica.address,
                _replicastate_name(replica.state),
                replica.adapter_version,
                replica.event_stream_id,
                str(replica.last_event_sequence),
                replica.last_error,
            ]
            for adapter, replica in replicas
        ],
        names=[f"adapter/{adapter.mesh}/{replica.address}" for adapter, replica in replicas],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0


def _parameters(descriptor: apb.OperationDescriptor) -> str:
    parts = []
    for parameter in descriptor.parameters:
        text = parameter.name + ("*" if parameter.required else "")
        if parameter.default_value:
            text += f"={parameter.default_value}"
        parts.append(text)
    return " ".join(parts)


async def _ops(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListOperations(
        cpb.ListOperationsRequest(mesh=args.mesh), timeout=args.call_timeout
    )
    entries = [(catalogue, op) for catalogue in response.catalogues for op in catalogue.operations]
    listing = Listing(
        columns=[
            Column(header="MESH"),
            Column(header="OPERATION"),
            Column(header="CATEGORY"),
            Column(header="DELETE", wide=True),
            Column(header="PARAMETERS", wide=True),
            Column(header="DESCRIPTION"),
        ],
        rows=[
            [
                catalogue.mesh,
                op.id,
                str(apb.OperationCategory.Name(op.category)).removeprefix("OPERATION_CATEGORY_"),
                "yes" if op.supports_delete else "no",
                _parameters(op),
                op.description,
            ]
            for catalogue, op in entries
        ],
        names=[f"operation/{catalogue.mesh}/{op.id}" for catalogue, op in entries],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0


async def _versions(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListMeshVersions(
        cpb.ListMeshVersionsRequest(mesh=args.mesh), timeout=args.call_timeout
    )
    listing = Listing(
        columns=[
            Column(header="VERSION"),
            Column(header="APP VERSION"),
            Column(header="PRERELEASE"),
            Column(header="PUBLISHED", wide=True),
        ],
        rows=[
            [
                version.version
                + (" (default)" if version.version == response.default_version else ""),
                version.app_version,
                "yes" if version.prerelease else "",
                local_time(version.create_time),
            ]
            for version in response.versions
        ],
        names=[f"version/{args.mesh}/{version.version}" for version in response.versions],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0


async def _status(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.GetMeshStatus(
        cpb.GetMeshStatusRequest(
            mesh=args.mesh, request=apb.GetMeshStatusRequest(namespace=args.namespace)
        ),
        timeout=args.call_timeout,
    )
    if args.output != "table":
        print_document(as_dict(response), args.output)
        return 0
    status = response.status
    print(f"mesh:       {response.mesh}")
    print(f"cluster:    {status.cluster}")
    print(f"installed:  {'yes' if status.installed else 'no'}")
    if status.installed:
        print(f"version:    {status.version}")
        print(f"namespace:  {status.namespace}")
    injection = ", ".join(status.injection_namespaces) or "(none)"
    print(f"injection:  {injection}")
    if status.components:
        print()
        print_table(
            ["KIND", "NAMESPACE", "NAME", "READY", "MESSAGE"],
            [
                [c.kind, c.namespace, c.name, "yes" if c.ready else "no", c.message]
                for c in status.components
            ],
        )
    return 0


def _time_flag(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: an ISO 8601 time (naive means UTC) or an age like ``90m``."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        amount, unit = relative.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time (2026-01-31T12:00:00Z) nor an age "
            "(30s, 15m, 1h, 2d, 1w)"
        ) from None
    return when if when.utcoffset() is not None else when.replace(tzinfo=UTC)


def _history_request(args: argparse.Namespace) -> cpb.ListOperationHistoryRequest:
    request = cpb.ListOperationHistoryRequest(
        mesh=args.mesh,
        state=(
            apb.OperationState.Value(f"OPERATION_STATE_{args.state.upper()}")
            if args.state
            else apb.OPERATION_STATE_UNSPECIFIED
        ),
        username=args.user,
    )
    if args.since is not None:
        request.start_time.FromDatetime(args.since.astimezone(UTC))
    if args.until is not None:
        request.end_time.FromDatetime(args.until.astimezone(UTC))
    return request


async def _history(stub: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    records: list[cpb.OperationRecord] = []
    token = args.page_token
    while args.all or len(records) < args.limit:
        request = _history_request(args)
        request.page_size = 500 if args.all else min(500, args.limit - len(records))
        request.page_token = token
        page = await stub.ListOperationHistory(request, timeout=args.call_timeout)
        records.extend(page.operations)
        token = page.next_page_token
        if not token:
            break
    listing = Listing(
        columns=[
            Column(header="CREATED"),
            Column(header="ID"),
            Column(header="MESH"),
            Column(header="OPERATION"),
            Column(header="STATE"),
            Column(header="USER"),
            Column(header="ENDED", wide=True),
            Column(header="ERROR"),
        ],
        rows=[
            [
                local_time(r.operation.create_time),
                r.operation.operation_id,
                r.mesh,
                r.operation.operation + (" (delete)" if r.operation.delete else ""),
                state_name(r.operation.state),
                r.operation.username,
                local_time(r.operation.end_time),
                r.operation.error.code,
            ]
            for r in records
        ],
        names=[f"operation/{r.operation.operation_id}" for r in records],
        document={
            "operations": [as_dict(record) for record in records],
            "next_page_token": token,
        },
    )
    print_listing(listing, args)
    if token:  # on stderr, so the table stays clean for line tools
        print(f"more: meshplane history --page-token {token} (or --all)", file=sys.stderr)
    return 0


# -- audit ------------------------------------------------------------------------------------


def _audit_request(args: argparse.Namespace) -> cpb.ListAuditRecordsRequest:
    request = cpb.ListAuditRecordsRequest(
        subject=args.user,
        decision=_AUDIT_DECISIONS.get(args.decision or "", cpb.AUDIT_DECISION_UNSPECIFIED),
    )
    if args.since is not None:
        request.start_time.FromDatetime(args.since.astimezone(UTC))
    if args.until is not None:
        request.end_time.FromDatetime(args.until.astimezone(UTC))
    return request


def _decision(value: int) -> str:
    return str(cpb.AuditDecision.Name(cpb.AuditDecision.ValueType(value))).removeprefix(
        "AUDIT_DECISION_"
    )


async def _audit(stub: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    records: list[cpb.AuditRecord] = []
    token = ""
    while args.all or len(records) < args.limit:
        request = _audit_request(args)
        request.page_size = 500 if args.all else min(500, args.limit - len(records))
        request.page_token = token
        page = await stub.ListAuditRecords(request, timeout=args.call_timeout)
        records.extend(page.records)
        token = page.next_page_token
        if not token:
            break
    listing = Listing(
        columns=[
            Column(header="TIME"),
            Column(header="USER"),
            Column(header="METHOD"),
            Column(header="MESH"),
            Column(header="NAMESPACE"),
            Column(header="OPERATION"),
            Column(header="DECISION"),
            Column(header="OUTCOME"),
            Column(header="SOURCE", wide=True),
            Column(header="REASON", wide=True),
        ],
        rows=[
            [
                local_time(r.time),
                r.subject or "-",
                r.method.rsplit("/", 1)[-1],
                r.mesh or "-",
                r.namespace or "-",
                r.operation_id or "-",
                _decision(r.decision),
                r.outcome,
                r.source_address,
                r.reason,
            ]
            for r in records
        ],
        names=[f"auditrecord/{r.record_id}" for r in records],
        document={"records": [as_dict(r) for r in records], "next_page_token": token},
    )
    print_listing(listing, args)
    if token:
        print("more: meshplane audit --all", file=sys.stderr)
    return 0


# -- events -----------------------------------------------------------------------------------


_EVENT_HEADER = ("CURSOR", "TIME", "MESH", "SEVERITY", "OPERATION", "MESSAGE")


def _event_line(response: cpb.WatchEventsResponse) -> str:
    event = response.event
    where = " ".join(part for part in (event.cluster, event.component) if part)
    prefix = f"{response.cursor:>6}  {local_time(event.timestamp):<20}  {response.mesh:<8} "
    prefix += f"{_severity(event.severity):<8} {event.operation_id or '-':<12}"
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


# -- apply ------------------------------------------------------------------------------------


def _switch_params(args: argparse.Namespace) -> dict[str, str]:
    """The parameters flags stand for (``--create-namespace``: ``create-namespace=true``,
    ``--purge-crds``: ``purge-crds=true``)."""
    if args.purge_crds and not args.delete:
        raise UsageError("--purge-crds only applies with --delete")
    switches = {"create-namespace": args.create_namespace, "purge-crds": args.purge_crds}
    return {name: "true" for name, on in switches.items() if on}


def _apply_request(args: argparse.Namespace) -> cpb.ApplyOperationRequest:
    body = custom_body(args)
    request = apb.ApplyOperationRequest(
        operation_id=args.operation_id,
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


async def _apply(stub: Any, args: argparse.Namespace) -> int:
    if args.dry_run:
        # Answered once every write was tried with dryRun=All: give it the operation's time.
        seconds = DRY_RUN_SECONDS if args.timeout is None else args.timeout + args.call_timeout
        answer = await stub.ApplyOperation(_apply_request(args), timeout=seconds)
        return print_dry_run(answer, args.output)
    if not _confirmed(args):
        print("not deleted", file=sys.stderr)
        return EXIT_INTERRUPTED
    response = await stub.ApplyOperation(_apply_request(args), timeout=args.call_timeout)
    operation_id = response.operation_id
    if not args.wait:
        if args.output != "table":
            print_document(as_dict(response), args.output)
        else:
            state = state_name(response.operation.operation.state)
            print(f"operation {operation_id} {state} on {response.operation.adapter_address}")
            print(f"wait for it with: meshplane wait {operation_id}")
        return 0
    if args.output != "table":
        print_stream_document(as_dict(response), args.output)
    else:
        print(f"operation {operation_id} accepted by {response.operation.adapter_address}")

    return await wait_for_operation(
        stub,
        operation_id,
        call_timeout=args.call_timeout,
        limit=None if args.timeout is None else args.timeout + args.call_timeout,
        output=args.output,
        verbose=args.verbose,
    )
