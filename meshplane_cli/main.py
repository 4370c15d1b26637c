"""`meshplane` console script: subcommands are registered by each package's command module."""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable, Sequence

Runner = Callable[[argparse.Namespace], int]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """Assemble the parser from every package's `register` function.

    Command modules are imported lazily so that `meshplane --help` stays fast.
    """
    parser = argparse.ArgumentParser(
        prog="meshplane",
        description="Service mesh management plane: adapters, coordinator, kubesim.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    from meshplane_cli import commands

    chosen = commands.modules_for(sys.argv[1:] if argv is None else argv)
    commands.register_all(sub, chosen)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments and run the chosen subcommand; its return value is the exit code."""
    unknown = _unknown_command(sys.argv[1:] if argv is None else argv)
    if unknown:
        print(unknown, file=sys.stderr)
        return 2
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    runner: Runner = args.run
    return runner(args)


def _unknown_command(argv: Sequence[str]) -> str:
    """A usage line for a mistyped command, with the closest real ones; "" when it is known."""
    from meshplane_cli import commands

    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command is None or command in commands.COMMANDS:
        return ""
    close = difflib.get_close_matches(command, list(commands.COMMANDS), n=3, cutoff=0.6)
    hint = ("; did you mean " + " or ".join(repr(c) for c in close) + "?") if close else ""
    return f"meshplane: unknown command {command[:60]!r}{hint} (see `meshplane --help`)"


if __name__ == "__main__":
    sys.exit(main())
