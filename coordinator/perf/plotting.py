"""Plots of stored results, drawn with matplotlib: one result's four views, or runs compared.

`plot_result` draws the latency histogram, the percentile curve, latency over time and
throughput over time (the last two from the result's timeline, when the generator recorded
one); `plot_comparison` overlays the percentile curves of several runs, each labelled with its
load so runs at different rates are not mistaken for like with like. The file type follows
the extension (``.svg``, ``.png``, ``.pdf``). matplotlib is imported only when a plot is asked
for, with the non-interactive Agg backend, so nothing here needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinator.perf.results import HistogramBucket, PerformanceResult
from serving.durations import format_duration

__all__ = ["PLOT_FORMATS", "PlotError", "load_text", "plot_comparison", "plot_result"]

PLOT_FORMATS = (".svg", ".png", ".pdf")


class PlotError(ValueError):
    """A plot that cannot be drawn (unknown file type, matplotlib missing); says what to do."""


def load_text(result: PerformanceResult) -> str:
    """The load a run was asked for: ``200 req/s, 10s, 8 conn`` (``max rate`` without a rate).

    The span is the configured duration or request count; a result without its config (an
    import) shows how long it ran.
    """
    rate = f"{result.requested_qps:g} req/s" if result.requested_qps else "max rate"
    config = result.config
    if config is not None and config.request_count > 0:
        span = f"{config.request_count} requests"
    elif config is not None:
        span = format_duration(config.duration_s)
    else:
        span = format_duration(round((result.end_time - result.start_time).total_seconds()))
    return f"{rate}, {span}, {result.connections} conn"


def _pyplot(path: Path) -> tuple[Any, Any]:
    if path.suffix.lower() not in PLOT_FORMATS:
        raise PlotError(
            f"cannot tell the plot type from {path.name!r}: end it in " + ", ".join(PLOT_FORMATS)
        )
    try:
        import matplotlib
    except ImportError as exc:
        raise PlotError(
            "plots need matplotlib: pip install 'meshplane[plots]' (pinned in constraints.txt)"
        ) from exc
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, editable
    import matplotlib.pyplot as plt

    return plt, matplotlib.ticker


def _percentile_curve(buckets: Sequence[HistogramBucket]) -> tuple[list[float], list[float]]:
    """(percentile, latency ms) points from the cumulative buckets, ends included."""
    points = [(b.cumulative_percent, b.end_ms) for b in buckets if b.count]
    if not points:
        return [], []
    first = next(b for b in buckets if b.count)
    percents = [0.0, *(p for p, _ in points)]
    latencies = [first.start_ms, *(ms for _, ms in points)]
    return percents, latencies


def plot_result(result: PerformanceResult, path: Path) -> None:
    """Four panels of one result, written to ``path``."""
    plt, ticker = _pyplot(path)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7.5), layout="constrained")
    figure.suptitle(f"result {result.id[:8]} - {load_text(result)}")
    histogram, percentiles, latency, throughput = axes.flat

    filled = [b for b in result.histogram if b.count]
    histogram.set_title("latency histogram")
    if filled:
        histogram.bar(
            [b.start_ms for b in filled],
            [b.count for b in filled],
            width=[b.end_ms - b.start_ms for b in filled],
            align="edge",
            label="requests",
        )
        histogram.set_xscale("log")
        histogram.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        histogram.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
        histogram.xaxis.set_minor_formatter(ticker.NullFormatter())
    histogram.set_xlabel("latency (ms)")
    histogram.set_ylabel("requests")

    percents, latencies = _percentile_curve(result.histogram)
    percentiles.set_title("latency by percentile")
    percentiles.plot(percents, latencies, marker=".", label="latency")
    percentiles.set_xlabel("percentile")
    percentiles.set_ylabel("latency (ms)")

    times = [p.elapsed_s for p in result.timeline]
    latency.set_title("latency over time")
    latency.plot(times, [p.mean_latency_ms for p in result.timeline], label="mean")
    latency.plot(times, [p.max_latency_ms for p in result.timeline], label="max")
    latency.set_xlabel("time (s)")
    latency.set_ylabel("latency (ms)")
    latency.legend()

    throughput.set_title("throughput over time")
    throughput.plot(times, [p.qps for p in result.timeline], label="answered req/s")
    starts = [0.0, *times[:-1]]
    failed = [
        p.errors / (p.elapsed_s - start) if p.elapsed_s > start else 0.0
        for p, start in zip(result.timeline, starts, strict=True)
    ]
    throughput.plot(times, failed, label="failed req/s", color="tab:red")
    throughput.set_xlabel("time (s)")
    throughput.set_ylabel("requests per second")
    throughput.legend()
    figure.savefig(path)
    plt.close(figure)


def plot_comparison(results: Sequence[PerformanceResult], path: Path) -> None:
    """The runs' percentile curves overlaid, each labelled with its id, name and load."""
    plt, _ = _pyplot(path)
    figure, axes = plt.subplots(figsize=(9, 6), layout="constrained")
    axes.set_title("latency by percentile")
    for result in results:
        percents, latencies = _percentile_curve(result.histogram)
        name = result.config.name if result.config is not None and result.config.name else ""
        label = " ".join(part for part in (result.id[:8], name) if part)
        axes.plot(percents, latencies, marker=".", label=f"{label} ({load_text(result)})")
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.legend()
    figure.savefig(path)
    plt.close(figure)
