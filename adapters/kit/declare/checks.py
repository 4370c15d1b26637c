"""What a validate operation runs: checks over the cluster, and the findings they report.

Also the request checks: cross-parameter validation before anything is planned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.kit.declare.cluster_reader import ClusterReader

if TYPE_CHECKING:
    from adapters.kit.model.records import ErrorDetail, Severity

__all__ = ["Check", "CheckContext", "Finding", "RequestCheck"]


@dataclass(frozen=True, kw_only=True)
class Finding:
    """One result of a check: becomes an event with this severity."""

    severity: Severity
    summary: str
    component: str = ""
    details: str = ""
    error: ErrorDetail | None = None


@dataclass(frozen=True, kw_only=True)
class CheckContext:
    """What a validate check receives."""

    mesh: str
    namespace: str
    parameters: Mapping[str, str]
    cluster: ClusterReader


Check = Callable[[CheckContext], Awaitable[Sequence[Finding]]]
RequestCheck = Callable[[Mapping[str, str]], Sequence[tuple[str, str]]]
"""Cross-parameter validation: returns (field, message) pairs for each problem."""
