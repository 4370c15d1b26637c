"""The `meshplane` command table names exactly what each module registers."""

from __future__ import annotations

import argparse
import subprocess
import sys

from meshplane_cli import commands


def _registered_by(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    commands.register_all(sub, (module,))
    return set(sub.choices)


def test_every_module_registers_exactly_its_table_entries() -> None:
    for module in commands.COMMAND_MODULES:
        expected = {name for name, home in commands.COMMANDS.items() if home == module}
        assert _registered_by(module) == expected, module


def test_only_the_invoked_commands_module_is_chosen() -> None:
    assert commands.modules_for(["adapter", "istio", "--port", "0"]) == (
        "adapters.kit.process.cli",
    )
    assert commands.modules_for(["--help"]) == commands.COMMAND_MODULES
    assert commands.modules_for(["no-such-command"]) == commands.COMMAND_MODULES


def test_an_adapter_command_line_loads_no_coordinator_or_database_code() -> None:
    code = (
        "import sys; from meshplane_cli.main import build_parser; "
        "build_parser(['adapter', 'istio', '--help-not-parsed']); "
        "print(sorted(m for m in ('coordinator', 'psycopg', 'kubesim') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
