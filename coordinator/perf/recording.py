"""Counting outcomes and latencies during a run, and summarising them in milliseconds.

Latencies are recorded as integer microseconds in an HDR histogram (3 significant digits, up to
one hour) and reported in ms; the histogram is exported as fixed 1-1.5-2-2.5-3-4-5-6-7-8-9
buckets per decade so results from every generator line up.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

from coordinator.perf.results import HistogramBucket, LatencySummary, TimelinePoint

_HIGHEST_US = 3_600_000_000
_PERCENTILES = (50.0, 75.0, 90.0, 99.0, 99.9)
_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
# Bucket edges in microseconds: 1 us .. 1 hour.
_EDGES_US: tuple[float, ...] = tuple(
    step * 10**decade for decade in range(10) for step in _STEPS if step * 10**decade <= _HIGHEST_US
)


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(1, _HIGHEST_US, 3)


class _Interval:
    """Counters since the timeline's last point."""

    __slots__ = ("errors", "latency_max_s", "latency_sum_s", "responses")

    def __init__(self) -> None:
        self.responses = 0
        self.errors = 0
        self.latency_sum_s = 0.0
        self.latency_max_s = 0.0


class Tally:
    """Mutable counters for one run; owned by the run, written by its workers on one loop.

    Latencies are counted per whole microsecond in a dict (a dict increment costs a tenth of an
    HDR record) and folded into the HDR histogram in batches.
    """

    _FOLD_AT = 20_000  # distinct microsecond values held before folding into the histogram

    def __init__(self) -> None:
        self._histogram = new_histogram()
        self._pending: dict[int, int] = {}
        self.responses = 0
        self.errors = 0
        self.codes: dict[str, int] = {}
        self.transport_errors: dict[str, int] = {}
        self.last_done = 0.0
        self._interval = _Interval()

    def response(self, code: str, latency_s: float, failed: bool, done: float) -> None:
        """Count one answered request (any status) and its latency."""
        micros = int(latency_s * 1_000_000 + 0.5) or 1
        pending = self._pending
        pending[micros] = pending.get(micros, 0) + 1
        if len(pending) >= self._FOLD_AT:
            self._fold()
        self.responses += 1
        interval = self._interval
        interval.responses += 1
        interval.latency_sum_s += latency_s
        interval.latency_max_s = max(interval.latency_max_s, latency_s)
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        if failed:
            self.errors += 1
            interval.errors += 1
        self.last_done = done

    def transport_error(self, kind: str, done: float) -> None:
        """Count one request that got no answer (connect refused, reset, timeout)."""
        self.errors += 1
        self._interval.errors += 1
        self.transport_errors[kind] = self.transport_errors.get(kind, 0) + 1
        self.last_done = done

    def close_interval(self, elapsed_s: float, length_s: float) -> TimelinePoint:
        """The interval that ends now (``elapsed_s`` into the run), and start the next."""
        interval, self._interval = self._interval, _Interval()
        answered = interval.responses
        return TimelinePoint(
            elapsed_s=elapsed_s,
            requests=answered,
            errors=interval.errors,
            qps=answered / length_s if length_s > 0 else 0.0,
            mean_latency_ms=interval.latency_sum_s * 1000.0 / answered if answered else 0.0,
            max_latency_ms=interval.latency_max_s * 1000.0,
        )

    @property
    def attempts(self) -> int:
        """Requests finished either way (answered or failed without an answer)."""
        return self.responses + sum(self.transport_errors.values())

    def histogram(self) -> HdrHistogram:
        """The latency histogram (microseconds) with everything recorded so far."""
        self._fold()
        return self._histogram

    def _fold(self) -> None:
        record = self._histogram.record_value
        for micros, count in self._pending.items():
            record(micros, count)
        self._pending.clear()


def summarise(histogram: HdrHistogram) -> LatencySummary:
    """Percentiles, mean, min, max and stddev of a microsecond histogram, in milliseconds."""
    if histogram.get_total_count() == 0:
        return LatencySummary(
            min_ms=0.0,
            average_ms=0.0,
            p50_ms=0.0,
            p75_ms=0.0,
            p90_ms=0.0,
            p99_ms=0.0,
            p999_ms=0.0,
            max_ms=0.0,
            stddev_ms=0.0,
        )
    pct = histogram.get_percentile_to_value_dict(list(_PERCENTILES))
    return LatencySummary(
        min_ms=histogram.get_min_value() / 1000.0,
        average_ms=histogram.get_mean_value() / 1000.0,
        p50_ms=pct[50.0] / 1000.0,
        p75_ms=pct[75.0] / 1000.0,
        p90_ms=pct[90.0] / 1000.0,
        p99_ms=pct[99.0] / 1000.0,
        p999_ms=pct[99.9] / 1000.0,
        max_ms=histogram.get_max_value() / 1000.0,
        stddev_ms=histogram.get_stddev() / 1000.0,
    )


def buckets(histogram: HdrHistogram) -> tuple[HistogramBucket, ...]:
    """The non-empty fixed buckets of a microsecond histogram, ascending, bounds in ms."""
    total = histogram.get_total_count()
    if total == 0:
        return ()
    return bucket_counts(
        (
            (item.value_iterated_to, item.count_at_value_iterated_to)
            for item in histogram.get_recorded_iterator()
        ),
        total,
    )


def bucket_counts(
    values_us: Iterable[tuple[float, int]], total: int
) -> tuple[HistogramBucket, ...]:
    """Group (latency us, count) pairs into the fixed buckets."""
    counts: dict[int, int] = {}
    for value, count in values_us:
        index = bisect.bisect_right(_EDGES_US, value) - 1
        counts[index] = counts.get(index, 0) + count
    result: list[HistogramBucket] = []
    running = 0
    for index in sorted(counts):
        running += counts[index]
        start = 0.0 if index < 0 else _EDGES_US[index]
        end = _EDGES_US[index + 1] if index + 1 < len(_EDGES_US) else float(_HIGHEST_US)
        result.append(
            HistogramBucket(
                start_ms=start / 1000.0,
                end_ms=end / 1000.0,
                count=counts[index],
                cumulative_percent=100.0 * running / total,
            )
        )
    return tuple(result)
