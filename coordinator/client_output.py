"""How the client commands print: aligned tables for people, JSON for scripts.

Every command prints either one JSON document (``--output json``) or, for streams, one JSON
object per line, so ``jq`` and line-oriented tools both work.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict

__all__ = ["as_dict", "format_table", "local_time", "print_json", "print_table"]


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
    table = [list(headers), *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


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
    """A protobuf Timestamp as ``YYYY-MM-DD HH:MM:SS`` UTC ("" when unset)."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return ""
    when: datetime = timestamp.ToDatetime(tzinfo=UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S")
