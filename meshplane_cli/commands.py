"""The table of subcommands: which module registers each `meshplane` command.

Only the module of the command being run is imported, so an adapter process does not load the
coordinator's database drivers or the Helm engine for commands it never runs (that alone is
~70 MB of resident memory). `meshplane --help` imports them all to list every command.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

# command name -> module whose `register(subparsers)` adds it (a module may add several).
COMMANDS: dict[str, str] = {
    "kubesim": "kubesim.cli",
    "kube": "realkube.cli",
    "adapter": "adapters.kit.process.cli",
    "rbac": "adapters.rbac.command",
    "chart-meshes": "adapters.chart_meshes",
    "conformance": "adapters.conformance.cli",
    "coordinator": "coordinator.server.command",
    "up": "coordinator.sandbox.command",
    "adapters": "coordinator.client.catalogue_commands",
    "ops": "coordinator.client.catalogue_commands",
    "versions": "coordinator.client.catalogue_commands",
    "apply": "coordinator.client.apply_command",
    "status": "coordinator.client.status_command",
    "events": "coordinator.client.event_commands",
    "history": "coordinator.client.history_commands",
    "audit": "coordinator.client.history_commands",
    "template": "coordinator.client.template",
    "get": "coordinator.client.operations",
    "wait": "coordinator.client.operations",
    "cancel": "coordinator.client.operations",
    "version": "coordinator.client.operations",
    "config": "coordinator.client.contexts",
    "perf": "coordinator.perf.command",
    "completion": "meshplane_cli.completion",
}

COMMAND_MODULES: tuple[str, ...] = tuple(dict.fromkeys(COMMANDS.values()))


def modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The modules to import for this command line: the invoked command's, else all of them."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command in COMMANDS:
        return (COMMANDS[command],)
    return COMMAND_MODULES


def register_all(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    modules: Sequence[str] = COMMAND_MODULES,
) -> None:
    """Let each command module add its subcommands."""
    for module_path in modules:
        module = importlib.import_module(module_path)
        module.register(sub)
