"""scripts/check_sizes.py as `make lint` runs it: long definitions fail unless a reason says why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_sizes.py"


def _function(name: str, lines: int, above: str = "") -> str:
    body = "".join(f"    x{i} = {i}\n" for i in range(lines - 1))
    return f"{above}def {name}() -> None:\n{body}\n\n"


def _check(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    module = tmp_path / "module.py"
    module.write_text(source, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_function_at_the_limit_passes_and_one_line_more_fails(tmp_path: Path) -> None:
    assert _check(tmp_path, _function("fits", 60)).returncode == 0
    over = _check(tmp_path, _function("fits", 60) + _function("too_long", 61))
    assert over.returncode == 1
    assert over.stdout.count("\n") == 1
    assert (
        "module.py:" in over.stdout and "function too_long has 61 lines (limit 60)" in over.stdout
    )
    assert "# size: <why>" in over.stdout


def test_a_reason_above_the_definition_or_its_decorator_lets_it_pass(tmp_path: Path) -> None:
    reasoned = _function("table", 80, above="# size: one table read top to bottom\n")
    assert _check(tmp_path, reasoned).returncode == 0
    decorated = _function(
        "table", 80, above="# size: one table read top to bottom\n@staticmethod\n"
    )
    assert _check(tmp_path, decorated).returncode == 0
    bare_mark = _function("table", 80, above="# size:\n")
    assert _check(tmp_path, bare_mark).returncode == 1


def test_classes_are_held_to_300_lines(tmp_path: Path) -> None:
    methods = "".join(f"    def m{i}(self) -> int:\n        return {i}\n\n" for i in range(110))
    result = _check(tmp_path, f"class Big:\n{methods}")
    assert result.returncode == 1
    assert "class Big has" in result.stdout


def test_generated_modules_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "thing_pb2.py").write_text(_function("generated", 200), encoding="utf-8")
    assert _check(tmp_path, "X = 1\n").returncode == 0
