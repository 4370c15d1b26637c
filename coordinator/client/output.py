"""How the client commands print: aligned tables for people, JSON/YAML for scripts.

Listings take ``-o table|wide|json|yaml|name`` and ``--no-headers``, as kubectl's do: ``table``
shows the usual columns and, on a terminal, fits them to its width (the widest column is cut
with an ellipsis); ``wide`` adds the extra columns and never cuts; ``json``/``yaml`` print one
document; ``name`` prints ``kind/name`` per line. Streams print one JSON object per line (or one
YAML document each). Times are RFC 3339 in UTC (``2026-12-06T08:12:20Z``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import yaml
from google.protobuf.json_format import MessageToDict

__all__ = [
    "LISTING_OUTPUTS",
    "Column",
    "Listing",
    "add_listing_arguments",
    "as_dict",
    "fit_to_width",
    "format_table",
    "local_time",
    "print_document",
    "print_json",
    "print_listing",
    "print_stream_document",
    "print_table",
]

LISTING_OUTPUTS = ("table", "wide", "json", "yaml", "name")
_ELLIPSIS = "…"
_NARROWEST = 8


def as_dict(message: Any) -> dict[str, Any]:
    """A protobuf message as the JSON object scripts see: field names as in the .proto, and
    every field present (empty lists, zero values), so scripts need no defaults of their own."""
    result: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return result


def print_json(document: Any, *, out: TextIO | None = None) -> None:
    """One JSON document (or one line of a JSON-lines stream)."""
    stream = out or sys.stdout
    stream.write(json.dumps(document, sort_keys=True) + "\n")
    stream.flush()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    return _aligned([list(headers), *[[str(cell) for cell in row] for row in rows]])


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, out: TextIO | None = None
) -> None:
    """Print an aligned table, or a short note when there are no rows."""
    stream = out or sys.stdout
    if not rows:
        stream.write("(none)\n")
    else:
        stream.write(format_table(headers, rows) + "\n")
    stream.flush()


def local_time(timestamp: Any) -> str:
    """A protobuf Timestamp in RFC 3339, UTC, to the second ("" when unset)."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return ""
    when: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def add_listing_arguments(parser: argparse.ArgumentParser | Any) -> None:
    """``-o table|wide|json|yaml|name`` and ``--no-headers`` (on a parser or argument group)."""
    parser.add_argument(
        "--output",
        "-o",
        choices=LISTING_OUTPUTS,
        default="table",
        help="table (default), wide (more columns), json or yaml (for scripts), name",
    )
    parser.add_argument(
        "--no-headers", action="store_true", help="table/wide without the header line"
    )


def print_document(document: Any, output: str, *, out: TextIO | None = None) -> None:
    """One JSON or YAML document."""
    stream = out or sys.stdout
    if output == "yaml":
        stream.write(yaml.safe_dump(document, sort_keys=True, allow_unicode=True))
        stream.flush()
    else:
        print_json(document, out=stream)


def print_stream_document(document: Any, output: str) -> None:
    """One item of a stream: a JSON line, or a YAML document opened with ``---``."""
    if output == "yaml":
        sys.stdout.write("---\n")
    print_document(document, output)


@dataclass(frozen=True, kw_only=True)
class Column:
    """One table column; ``wide`` columns show only with ``-o wide``."""

    header: str
    wide: bool = False


@dataclass(frozen=True, kw_only=True)
class Listing:
    """What a listing command shows: columns and rows for people, a document for scripts,
    and a ``kind/name`` per row for ``-o name``."""

    columns: Sequence[Column]
    rows: Sequence[Sequence[str]]
    names: Sequence[str]
    document: Any


def print_listing(listing: Listing, args: argparse.Namespace, *, out: TextIO | None = None) -> None:
    """Print ``listing`` the way ``args.output`` / ``args.no_headers`` ask."""
    stream = out or sys.stdout
    output = args.output
    if output in ("json", "yaml"):
        print_document(listing.document, output, out=stream)
        return
    if output == "name":
        for name in listing.names:
            stream.write(name + "\n")
        stream.flush()
        return
    keep = [i for i, column in enumerate(listing.columns) if output == "wide" or not column.wide]
    headers = [listing.columns[i].header for i in keep]
    rows = [[str(row[i]) for i in keep] for row in listing.rows]
    if not rows:
        stream.write("(none)\n" if not args.no_headers else "")
        stream.flush()
        return
    table = rows if args.no_headers else [headers, *rows]
    if output == "table" and stream.isatty():
        table = fit_to_width(table, shutil.get_terminal_size().columns)
    text = _aligned(table)
    stream.write(text + "\n")
    stream.flush()


def fit_to_width(table: list[list[str]], width: int) -> list[list[str]]:
    """Cut the widest columns (with an ellipsis) until the aligned table fits ``width``."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    limits = list(widths)
    while sum(limits) + 2 * (len(limits) - 1) > width:
        widest = max(range(len(limits)), key=lambda i: limits[i])
        if limits[widest] <= _NARROWEST:
            break
        limits[widest] -= 1
    return [
        [
            cell if len(cell) <= limit else cell[: limit - 1] + _ELLIPSIS
            for cell, limit in zip(row, limits, strict=True)
        ]
        for row in table
    ]


def _aligned(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
