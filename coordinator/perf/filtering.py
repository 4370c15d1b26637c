"""Which stored results a ListPerformanceResults request selects (its documented semantics)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from coordinator.perf.results import PerformanceResult


def result_matches(
    result: PerformanceResult,
    *,
    labels: Mapping[str, str] | None = None,
    test_id: str = "",
    mesh_type: str = "",
    started_after: datetime | None = None,
    started_before: datetime | None = None,
) -> bool:
    """True when the result has every label, the test id and mesh type (when given), and
    started in [started_after, started_before)."""
    if labels and any(result.labels.get(key) != value for key, value in labels.items()):
        return False
    if test_id and result.test_id != test_id:
        return False
    if mesh_type:
        actual = result.mesh.type if result.mesh is not None else "none"
        if actual.lower() != mesh_type.lower():
            return False
    if started_after is not None and result.start_time < started_after:
        return False
    return not (started_before is not None and result.start_time >= started_before)
