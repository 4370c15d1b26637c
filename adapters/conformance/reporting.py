"""The suite's output: a pass/fail table for people, or one JSON document for machines."""

from __future__ import annotations

import json
import shutil
from typing import Any

from adapters.conformance.suite import SuiteReport
from adapters.conformance.verdicts import Outcome

__all__ = ["as_dict", "as_json", "as_table"]

_HEADERS = ("CHECK", "RESULT", "TIME", "DETAIL")


def as_table(report: SuiteReport, *, width: int | None = None) -> str:
    """Aligned rows (the detail column is cut to the terminal width) and a summary line."""
    width = width or shutil.get_terminal_size((160, 24)).columns
    rows = [
        (r.name, r.outcome.value.upper(), f"{r.seconds:.1f}s", " ".join(r.message.split()))
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in [_HEADERS, *rows]) for i in range(3)]
    detail_width = max(40, width - sum(widths) - 6)
    lines = []
    for row in [_HEADERS, *rows]:
        detail = row[3] if len(row[3]) <= detail_width else row[3][: detail_width - 3] + "..."
        cells = [row[i].ljust(widths[i]) for i in range(3)]
        lines.append("  ".join([*cells, detail]).rstrip())
    verdict = "CONFORMANT" if report.passed else "NOT CONFORMANT"
    mesh = f"{report.mesh} adapter" if report.mesh else "adapter"
    lines.append("")
    lines.append(
        f"{verdict}: {mesh} at {report.adapter}: {report.count(Outcome.PASS)} passed, "
        f"{report.count(Outcome.FAIL)} failed, {report.count(Outcome.SKIP)} skipped"
    )
    for failure in report.failures():
        lines.append(f"  {failure.name}: {failure.message}")
    return "\n".join(lines)


def as_dict(report: SuiteReport) -> dict[str, Any]:
    """The report as plain data."""
    return {
        "adapter": report.adapter,
        "mesh": report.mesh,
        "passed": report.passed,
        "summary": {o.value: report.count(o) for o in Outcome},
        "results": [
            {
                "name": r.name,
                "check": r.check,
                "subject": r.subject,
                "outcome": r.outcome.value,
                "message": r.message,
                "seconds": round(r.seconds, 3),
            }
            for r in report.results
        ],
    }


def as_json(report: SuiteReport) -> str:
    """One JSON document."""
    return json.dumps(as_dict(report), indent=2)
