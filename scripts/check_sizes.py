"""Size limits for our code: no class over 300 lines, no function over 60.

Usage: python scripts/check_sizes.py DIR_OR_FILE...

A definition may go past its limit only with a reason on its own line, right above it (or
above its decorators):

    # size: one table of the API server's verbs, read top to bottom
    def dispatch(...): ...

Generated code (`*_pb2*.py`) is skipped. Exit status 1 lists every definition over its limit.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

CLASS_LINES = 300
FUNCTION_LINES = 60
REASON_MARK = "# size:"


def _python_files(paths: list[str]) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        found = [path] if path.is_file() else sorted(path.rglob("*.py"))
        yield from (p for p in found if "_pb2" not in p.name)


def _has_reason(
    lines: list[str], node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
) -> bool:
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    above = lines[first - 2].strip() if first >= 2 else ""
    return above.startswith(REASON_MARK) and len(above) > len(REASON_MARK) + 3


def oversized(path: Path) -> Iterator[str]:
    """One line per definition in ``path`` that is over its limit without a reason."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.ClassDef):
            limit, kind = CLASS_LINES, "class"
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            limit, kind = FUNCTION_LINES, "function"
        else:
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > limit and not _has_reason(lines, node):
            yield (
                f"{path}:{node.lineno}: {kind} {node.name} has {length} lines (limit {limit}); "
                f"split it, or put '{REASON_MARK} <why>' on the line above it"
            )


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    problems = [line for path in _python_files(argv) for line in oversized(path)]
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
