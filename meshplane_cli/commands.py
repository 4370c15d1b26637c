"""The table of subcommands: each entry names the module that registers it."""

from __future__ import annotations

import argparse
import importlib

# module path -> function `register(subparsers)` adding one or more subcommands.
COMMAND_MODULES: tuple[str, ...] = (
    "kubesim.cli",
    "adapters.kit.cli",
    "coordinator.cli",
    "adapters.kit.rbac",
    "coordinator.client_cli",
    "adapters.conformance.cli",
    "coordinator.perf_cli",
)


def register_all(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Let every command module add its subcommands."""
    for module_path in COMMAND_MODULES:
        module = importlib.import_module(module_path)
        module.register(sub)
