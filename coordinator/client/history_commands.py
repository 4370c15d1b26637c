"""`meshplane history|audit`: the recorded operations and the audit trail, newest first.

Both page through the coordinator's records (``--limit``, or ``--all``) and take ``--since`` and
``--until`` as an ISO 8601 time (UTC unless it has an offset) or an age such as ``30m``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from coordinator.client.follow import state_name
from coordinator.client.operation_flags import UsageError
from coordinator.client.output import Column, Listing, as_dict, local_time, print_listing
from coordinator.client.subcommands import ClientSubcommands
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]

_STATES = ("pending", "running", "succeeded", "failed", "cancelled", "interrupted")
_AUDIT_DECISIONS = {
    "allowed": cpb.AUDIT_DECISION_ALLOWED,
    "denied": cpb.AUDIT_DECISION_DENIED,
    "unauthenticated": cpb.AUDIT_DECISION_UNAUTHENTICATED,
}
_RELATIVE = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_PAGE_SIZE = 500

_Record = TypeVar("_Record")
_Page = Callable[[int, str], Awaitable[tuple[Sequence[_Record], str]]]
"""One page of records: given the page size and token, the records and the next token."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `history` and `audit` to `meshplane`."""
    commands = ClientSubcommands(subparsers)
    _history_arguments(
        commands.add("history", _history, "list recorded operations, newest first", listing=True)
    )
    _audit_arguments(
        commands.add(
            "audit",
            _audit,
            "list the audit trail: every mutating and every refused call (admins)",
            listing=True,
        )
    )


def _history_arguments(history: argparse.ArgumentParser) -> None:
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


def _audit_arguments(audit: argparse.ArgumentParser) -> None:
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


async def _collect(
    page: _Page[_Record], args: argparse.Namespace, *, token: str = ""
) -> tuple[list[_Record], str]:
    """Records up to ``--limit`` (every one with ``--all``), and the token that continues."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    records: list[_Record] = []
    while args.all or len(records) < args.limit:
        size = _PAGE_SIZE if args.all else min(_PAGE_SIZE, args.limit - len(records))
        found, token = await page(size, token)
        records.extend(found)
        if not token:
            break
    return records, token


def _set_period(request: Any, args: argparse.Namespace) -> None:
    """``--since``/``--until`` as the request's start and end times."""
    if args.since is not None:
        request.start_time.FromDatetime(args.since.astimezone(UTC))
    if args.until is not None:
        request.end_time.FromDatetime(args.until.astimezone(UTC))


# -- history ----------------------------------------------------------------------------------


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
    _set_period(request, args)
    return request


def _history_listing(records: list[cpb.OperationRecord], token: str) -> Listing:
    return Listing(
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


async def _history(stub: Any, args: argparse.Namespace) -> int:
    async def page(size: int, token: str) -> tuple[Sequence[cpb.OperationRecord], str]:
        request = _history_request(args)
        request.page_size = size
        request.page_token = token
        answer = await stub.ListOperationHistory(request, timeout=args.call_timeout)
        return answer.operations, answer.next_page_token

    records, token = await _collect(page, args, token=args.page_token)
    print_listing(_history_listing(records, token), args)
    if token:  # on stderr, so the table stays clean for line tools
        print(f"more: meshplane history --page-token {token} (or --all)", file=sys.stderr)
    return 0


# -- audit ------------------------------------------------------------------------------------


def _audit_request(args: argparse.Namespace) -> cpb.ListAuditRecordsRequest:
    request = cpb.ListAuditRecordsRequest(
        subject=args.user,
        decision=_AUDIT_DECISIONS.get(args.decision or "", cpb.AUDIT_DECISION_UNSPECIFIED),
    )
    _set_period(request, args)
    return request


def _decision(value: int) -> str:
    return str(cpb.AuditDecision.Name(cpb.AuditDecision.ValueType(value))).removeprefix(
        "AUDIT_DECISION_"
    )


def _audit_listing(records: list[cpb.AuditRecord], token: str) -> Listing:
    return Listing(
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


async def _audit(stub: Any, args: argparse.Namespace) -> int:
    async def page(size: int, token: str) -> tuple[Sequence[cpb.AuditRecord], str]:
        request = _audit_request(args)
        request.page_size = size
        request.page_token = token
        answer = await stub.ListAuditRecords(request, timeout=args.call_timeout)
        return answer.records, answer.next_page_token

    records, token = await _collect(page, args)
    print_listing(_audit_listing(records, token), args)
    if token:
        print("more: meshplane audit --all", file=sys.stderr)
    return 0
