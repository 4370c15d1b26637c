"""Prometheus metrics of the coordinator, on a registry of its own, served on ``/metrics``.

- ``meshplane_coordinator_grpc_requests_total{service,method,code}``: every call answered
  (the coordinator service, the adapter passthrough, health, reflection).
- per adapter replica (``mesh``, ``replica``), read from the event hub at scrape time:
  ``..._follower_connected``, ``..._follower_last_sequence``, ``..._follower_buffered_events``
  and ``..._follower_delay_seconds`` (lag: events read but not stored yet, and how old the newest
  stored event was when it was stored), ``..._follower_errors_total`` and
  ``..._follower_skipped_events_total`` (events it could not read, each a gap event).
- ``meshplane_coordinator_store_rows{table}`` (counted at scrape time) and
  ``meshplane_coordinator_pruned_rows_total{table}``.
- ``meshplane_coordinator_perf_tests_running`` and ``meshplane_coordinator_asyncio_tasks``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from coordinator.server.follower_state import FollowerStatus
from coordinator.server.retention import Pruned
from coordinator.store.base import Store
from serving.grpc_metrics import RequestMetrics

__all__ = ["CoordinatorMetrics"]

_log = structlog.get_logger(__name__)

PREFIX = "meshplane_coordinator"


class _Followers(Collector):
    """The event hub's followers, read when scraped."""

    def __init__(self, statuses: Callable[[], Sequence[FollowerStatus]]) -> None:
        self._statuses = statuses

    def collect(self) -> Iterator[Metric]:
        labels = ["mesh", "replica"]
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "connected": GaugeMetricFamily(
                f"{PREFIX}_follower_connected",
                "1 while the follower reads the replica's event stream.",
                labels=labels,
            ),
            "last_sequence": GaugeMetricFamily(
                f"{PREFIX}_follower_last_sequence",
                "Sequence of the newest event stored from the replica's stream.",
                labels=labels,
            ),
            "buffered": GaugeMetricFamily(
                f"{PREFIX}_follower_buffered_events",
                "Events read from the replica, not stored yet (lag in events).",
                labels=labels,
            ),
            "delay": GaugeMetricFamily(
                f"{PREFIX}_follower_delay_seconds",
                "Age of the newest stored event when it was stored (lag in time).",
                labels=labels,
            ),
            "errors": CounterMetricFamily(
                f"{PREFIX}_follower_errors",
                "Times the follower's stream failed or ended.",
                labels=labels,
            ),
            "skipped": CounterMetricFamily(
                f"{PREFIX}_follower_skipped_events",
                "Events the follower could not read and recorded as a gap.",
                labels=labels,
            ),
        }
        for status in self._statuses():
            values = {
                "connected": float(status.connected),
                "last_sequence": float(status.last_sequence),
                "buffered": float(status.buffered_events),
                "delay": status.delay_seconds,
                "errors": float(status.errors),
                "skipped": float(status.skipped_events),
            }
            for key, family in families.items():
                family.add_metric([status.mesh, status.address], values[key])
        yield from families.values()


class CoordinatorMetrics:
    """Every coordinator metric; `requests` is the gRPC interceptor feeding the request count."""

    def __init__(
        self,
        *,
        store: Store,
        followers: Callable[[], Sequence[FollowerStatus]],
        running_perf_tests: Callable[[], int],
    ) -> None:
        self._store = store
        self._running_perf_tests = running_perf_tests
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = RequestMetrics(self.registry, prefix=PREFIX)
        self.registry.register(_Followers(followers))
        self._rows = Gauge(
            f"{PREFIX}_store_rows",
            "Rows in the store, by table (counted when scraped).",
            ("table",),
            registry=self.registry,
        )
        self._pruned = Counter(
            f"{PREFIX}_pruned_rows",
            "Rows retention deleted, by table.",
            ("table",),
            registry=self.registry,
        )
        self._perf = Gauge(
            f"{PREFIX}_perf_tests_running",
            "Performance tests generating load now.",
            registry=self.registry,
        )
        self._tasks = Gauge(
            f"{PREFIX}_asyncio_tasks",
            "asyncio tasks alive in the coordinator's event loop.",
            registry=self.registry,
        )

    def pruned(self, pruned: Pruned) -> None:
        """`Pruner` hook: count what one retention pass deleted."""
        self._pruned.labels("events").inc(pruned.events)
        self._pruned.labels("operations").inc(pruned.operations)

    async def render(self) -> bytes:
        """Refresh what is read at scrape time, then the registry in Prometheus text format."""
        try:
            counts = await self._store.row_counts()
        except Exception as exc:
            _log.warning("metrics.store_rows_unavailable", error=repr(exc)[:200])
        else:
            self._rows.labels("events").set(counts.events)
            self._rows.labels("operations").set(counts.operations)
            self._rows.labels("perf_results").set(counts.perf_results)
        self._perf.set(self._running_perf_tests())
        self._tasks.set(len(asyncio.all_tasks()))
        return generate_latest(self.registry)
