"""The flags that describe an operation request, shared by `apply` and `template`.

``--version``, ``--namespace/-n``, ``--param/-p KEY=VALUE`` (repeatable) and ``-f/--file`` (the
custom operation's YAML, ``-`` for stdin), and turning them into request fields. A value the
command cannot use raises `UsageError` (exit code 2, the message names the flag).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["UsageError", "add_request_flags", "custom_body", "parameters"]


class UsageError(ValueError):
    """A flag value the command cannot use (exit code 2)."""


def add_request_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--version``, ``--namespace``, ``--param`` and ``--file`` to ``parser``."""
    parser.add_argument("--version", dest="mesh_version", default="", help="mesh version")
    parser.add_argument("--namespace", "-n", default="", help="target namespace")
    parser.add_argument(
        "--param",
        "-p",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="operation parameter (repeatable)",
    )
    parser.add_argument(
        "-f",
        "--file",
        type=Path,
        default=None,
        help="YAML body for the custom operation ('-' reads stdin)",
    )


def parameters(items: list[str]) -> dict[str, str]:
    """``--param`` values as a map; one that is not KEY=VALUE is a `UsageError`."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r} is not KEY=VALUE")
        found[key.strip()] = value
    return found


def custom_body(args: argparse.Namespace) -> str:
    """The ``-f`` file's text ("" without one); the custom operation needs one."""
    path: Path | None = args.file
    if path is None:
        body = ""
    elif str(path) == "-":
        body = sys.stdin.read()
    else:
        try:
            body = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read -f {path}: {exc.strerror}") from exc
    if args.operation == "custom" and not body.strip():
        raise UsageError("custom_body is empty; pass -f FILE (YAML documents, '-' for stdin)")
    return body
