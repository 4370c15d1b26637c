"""Side-by-side comparison of results: one row per metric, relative difference vs the first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.perf.results import PerformanceResult

# metric name, unit, how to read it from a result
_METRICS: tuple[tuple[str, str, Callable[[PerformanceResult], float]], ...] = (
    ("p50", "ms", lambda r: r.latencies.p50_ms),
    ("p75", "ms", lambda r: r.latencies.p75_ms),
    ("p90", "ms", lambda r: r.latencies.p90_ms),
    ("p99", "ms", lambda r: r.latencies.p99_ms),
    ("p99.9", "ms", lambda r: r.latencies.p999_ms),
    ("max", "ms", lambda r: r.latencies.max_ms),
    ("avg", "ms", lambda r: r.latencies.average_ms),
    ("qps", "req/s", lambda r: r.actual_qps),
)


@dataclass(frozen=True, kw_only=True)
class ComparisonCell:
    """One result's value of one metric; relative difference vs the baseline (None for it)."""

    result_id: str
    value: float
    relative_difference: float | None


@dataclass(frozen=True, kw_only=True)
class ComparisonRow:
    """One metric across the compared results."""

    metric: str
    unit: str
    cells: tuple[ComparisonCell, ...]


@dataclass(frozen=True, kw_only=True)
class Comparison:
    """Rows per metric over results given baseline first."""

    ids: tuple[str, ...]
    rows: tuple[ComparisonRow, ...]


def compare(results: Sequence[PerformanceResult]) -> Comparison:
    """Compare two or more results; the first is the baseline."""
    if len(results) < 2:
        raise ValueError("compare needs at least two results")
    rows = []
    for metric, unit, read in _METRICS:
        baseline = read(results[0])
        cells = []
        for index, result in enumerate(results):
            value = read(result)
            relative = None if index == 0 or baseline == 0 else (value - baseline) / baseline
            cells.append(
                ComparisonCell(result_id=result.id, value=value, relative_difference=relative)
            )
        rows.append(ComparisonRow(metric=metric, unit=unit, cells=tuple(cells)))
    return Comparison(ids=tuple(r.id for r in results), rows=tuple(rows))


def _cell_text(cell: ComparisonCell) -> str:
    text = f"{cell.value:.3f}"
    if cell.relative_difference is not None:
        text += f" ({cell.relative_difference * 100:+.1f}%)"
    return text


def comparison_table(comparison: Comparison) -> str:
    """A plain-text table: metric, unit, then one column per result (short id)."""
    header = ["metric", "unit", *(result_id[:8] for result_id in comparison.ids)]
    body = [
        [row.metric, row.unit, *(_cell_text(cell) for cell in row.cells)] for row in comparison.rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def render(line: list[str]) -> str:
        first = [line[0].ljust(widths[0]), line[1].ljust(widths[1])]
        rest = [text.rjust(width) for text, width in zip(line[2:], widths[2:], strict=True)]
        return "  ".join(first + rest).rstrip()

    return "\n".join([render(header), *(render(line) for line in body)]) + "\n"


def comparison_document(comparison: Comparison) -> dict[str, Any]:
    """The comparison as plain JSON-able data."""
    return {
        "ids": list(comparison.ids),
        "rows": [
            {
                "metric": row.metric,
                "unit": row.unit,
                "cells": [
                    {
                        "result_id": cell.result_id,
                        "value": cell.value,
                        "relative_difference": cell.relative_difference,
                    }
                    for cell in row.cells
                ],
            }
            for row in comparison.rows
        ],
    }
