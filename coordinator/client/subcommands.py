"""How a client command joins `meshplane`: the connection flags every one shares, its output
flag, and the hook that runs it on the coordinator (failures as hinted one-line messages)."""

from __future__ import annotations

import argparse

from coordinator.client.channel import Command, add_connection_arguments, run_client_command
from coordinator.client.hints import with_hints
from coordinator.client.operation_flags import UsageError
from coordinator.client.output import add_listing_arguments

__all__ = ["ClientSubcommands"]


class ClientSubcommands:
    """Adds client commands to `meshplane`; each gets the shared connection flags."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._subparsers = subparsers
        self._common = argparse.ArgumentParser(add_help=False)
        add_connection_arguments(
            self._common, call_timeout_help="deadline of each request (default 30)"
        )

    def add(
        self, name: str, command: Command, help: str, *, listing: bool = False
    ) -> argparse.ArgumentParser:
        """Add ``name`` running ``command``: ``-o`` of listings when ``listing``, else
        ``-o table|json|yaml``. Returns its parser for the command's own arguments."""
        parser = self._subparsers.add_parser(
            name, parents=[self._common], help=help, description=help
        )
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
