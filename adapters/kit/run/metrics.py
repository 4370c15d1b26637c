"""Prometheus metrics of one adapter, on a registry of its own.

A dedicated `CollectorRegistry` (not the process-global one) lets several adapters live in one
process (tests, an all-in-one dev run) without duplicate-metric errors. `MetricsServer` serves it
on ``/metrics`` from the adapter's event loop (``serving.metrics_server``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from adapters.kit.model.records import OperationState
from adapters.kit.run.events import Event

__all__ = ["AdapterMetrics"]

_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class AdapterMetrics:
    """Counters and histograms the runner, the event log and the apply engine feed."""

    def __init__(self, *, mesh: str) -> None:
        self.mesh = mesh
        self.registry = CollectorRegistry(auto_describe=True)
        self._operations = Counter(
            "meshplane_adapter_operations_total",
            "Operations that reached a state, by catalogue id and state.",
            ("mesh", "operation", "state"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "meshplane_adapter_operation_duration_seconds",
            "Time from start to a terminal state, per operation attempt.",
            ("mesh", "operation"),
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._retries = Counter(
            "meshplane_adapter_kubernetes_retries_total",
            "Kubernetes API calls retried after a retryable error (429, 5xx, conflicts).",
            ("mesh",),
            registry=self.registry,
        )
        self._events = Counter(
            "meshplane_adapter_events_total",
            "Events appended to the adapter's event log, by severity.",
            ("mesh", "severity"),
            registry=self.registry,
        )

    def operation_state(self, operation: str, state: OperationState) -> None:
        """Count an operation entering ``state`` (PENDING when accepted, then each change)."""
        self._operations.labels(self.mesh, operation, state.value).inc()

    def operation_duration(self, operation: str, seconds: float) -> None:
        """Observe how long one attempt ran."""
        self._durations.labels(self.mesh, operation).observe(seconds)

    def kubernetes_retry(self) -> None:
        """Retry hook for the apply engine: one Kubernetes API call is being retried."""
        self._retries.labels(self.mesh).inc()

    def event_appended(self, event: Event) -> None:
        """`EventLog` append hook."""
        self._events.labels(self.mesh, event.severity.value).inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)

    async def render(self) -> bytes:
        """`exposition` for `MetricsServer`."""
        return self.exposition()
