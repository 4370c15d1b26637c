"""Load from `wrk` (the Debian package), normalised to the same result as the built-in generator.

A small Lua `done()` hook prints wrk's exact numbers as one JSON line (min/max/mean/stdev, the
percentiles, and the latency at every 0.1 % of requests), so nothing is scraped from wrk's
rounded text. Stock wrk has no constant-rate mode (that is
wrk2), so a config with rps > 0 is refused with that reason.
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import structlog

from coordinator.perf import identities
from coordinator.perf.http_load import build_target
from coordinator.perf.recording import bucket_counts
from coordinator.perf.results import (
    EnvironmentInfo,
    LatencySummary,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Protocol,
    TestConfig,
)

log = structlog.get_logger(__name__)

_MARKER = "MESHPLANE_WRK_JSON "
_QUANTILE_STEPS = 1000  # the distribution is sampled at every 0.1 % of requests
# Lua run by wrk once at the end. Debian's wrk 4.1 exposes latency min/max/mean/stdev and
# percentile(p) (exact, from its per-microsecond counts) but not the counts themselves.
_DONE_HOOK = r"""
done = function(summary, latency, requests)
  local quantiles = {}
  for k = 1, STEPS - 1 do
    quantiles[k] = string.format("%d", latency:percentile(100 * k / STEPS))
  end
  quantiles[STEPS] = string.format("%d", latency.max)
  local e = summary.errors
  io.write(string.format(
    '%s{"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"min_us":%d,"max_us":%d,"mean_us":%.3f,"stdev_us":%.3f,' ..
    '"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"quantiles_us":[%s]}\n',
    MARKER, summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), table.concat(quantiles, ",")))
end
"""


class WrkUnavailableError(RuntimeError):
    """wrk is not installed (`apt-get install wrk`)."""


@dataclass(frozen=True, kw_only=True)
class WrkReport:
    """wrk's numbers as printed by the done() hook."""

    duration_us: int
    requests: int
    errors: dict[str, int]
    min_us: int
    max_us: int
    mean_us: float
    stdev_us: float
    percentiles_us: dict[str, int]  # "p50", "p75", "p90", "p99", "p999"
    quantiles_us: tuple[int, ...]  # latency at k/1000 of requests, k = 1..1000


def wrk_path() -> str | None:
    """Path of the wrk binary, or None."""
    return shutil.which("wrk")


def _lua_string(text: str) -> str:
    """A Lua string literal for any text (decimal escapes for everything unusual)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char.isalnum() or char in " -_./:;=,+*?!@#$%^&()[]{}<>|~'`":
            out.append(char)
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _script(config: TestConfig) -> str:
    client = config.clients[0]
    lines = [f"MARKER = {_lua_string(_MARKER)}", f"STEPS = {_QUANTILE_STEPS}"]
    target = build_target(
        client.endpoint_urls[0],
        method=client.http_method,
        headers=client.headers,
        cookies=client.cookies,
        body=client.body,
        content_type=client.content_type,
    )
    method = target.request.split(b" ", 1)[0].decode()
    lines.append(f"wrk.method = {_lua_string(method)}")
    if client.body:
        lines.append(f"wrk.body = {_lua_string(client.body)}")
    for name, value in client.headers.items():
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    if client.cookies:
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        lines.append(f'wrk.headers["Cookie"] = {_lua_string(cookie)}')
    if client.body and client.content_type:
        lines.append(f'wrk.headers["Content-Type"] = {_lua_string(client.content_type)}')
    return "\n".join(lines) + "\n" + _DONE_HOOK


def parse_report(stdout: str) -> WrkReport:
    """Find the done() hook's JSON line in wrk's output."""
    for line in stdout.splitlines():
        if line.startswith(_MARKER):
            data: dict[str, Any] = json.loads(line[len(_MARKER) :])
            return WrkReport(
                duration_us=int(data["duration_us"]),
                requests=int(data["requests"]),
                errors={str(k): int(v) for k, v in data["errors"].items()},
                min_us=int(data["min_us"]),
                max_us=int(data["max_us"]),
                mean_us=float(data["mean_us"]),
                stdev_us=float(data["stdev_us"]),
                percentiles_us={
                    name: int(data[f"{name}_us"]) for name in ("p50", "p75", "p90", "p99", "p999")
                },
                quantiles_us=tuple(int(v) for v in data["quantiles_us"]),
            )
    raise ValueError(f"wrk printed no summary line; its output was:\n{stdout[-2000:]}")


def check_supported(config: TestConfig) -> None:
    """ValueError if wrk cannot run this config as asked."""
    if not config.clients:
        raise ValueError("the test config has no clients")
    client = config.clients[0]
    if client.protocol is not Protocol.HTTP:
        raise ValueError("wrk speaks HTTP only; use the built-in generator for gRPC")
    if client.rps:
        raise ValueError(
            "stock wrk has no constant-rate mode (that is wrk2, not packaged); "
            "use the built-in generator for --rps, or rps 0 for max-throughput"
        )
    if config.request_count:
        raise ValueError("wrk stops by duration only, not by request count")
    if config.duration_s <= 0:
        raise ValueError("wrk needs a duration")
    if not client.endpoint_urls:
        raise ValueError("the client has no endpoint URL")


def normalise(
    report: WrkReport,
    config: TestConfig,
    *,
    started: datetime,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
) -> PerformanceResult:
    """Turn wrk's report (microseconds) into a PerformanceResult (milliseconds).

    The summary numbers are wrk's own exact ones; the histogram is rebuilt from the latency at
    every 0.1 % of requests, so its bucket counts are exact to within 0.1 % of the total.
    """
    client = config.clients[0]
    pct = report.percentiles_us
    latencies = LatencySummary(
        min_ms=report.min_us / 1000.0,
        average_ms=report.mean_us / 1000.0,
        p50_ms=pct["p50"] / 1000.0,
        p75_ms=pct["p75"] / 1000.0,
        p90_ms=pct["p90"] / 1000.0,
        p99_ms=pct["p99"] / 1000.0,
        p999_ms=pct["p999"] / 1000.0,
        max_ms=report.max_us / 1000.0,
        stddev_ms=report.stdev_us / 1000.0,
    )
    steps = len(report.quantiles_us)
    total = report.requests
    weighted = [
        (float(value), round(k * total / steps) - round((k - 1) * total / steps))
        for k, value in enumerate(report.quantiles_us, start=1)
    ]
    histogram = bucket_counts(((v, c) for v, c in weighted if c > 0), total) if total else ()
    elapsed = max(report.duration_us / 1_000_000, 1e-9)
    status_errors = report.errors.get("status", 0)
    transport = {kind: count for kind, count in report.errors.items() if kind != "status" and count}
    classes = {"1xx-3xx": report.requests - status_errors, "4xx-5xx": status_errors}
    codes = {name: count for name, count in classes.items() if count}
    return PerformanceResult(
        id=identities.new_id(),
        test_id=config.id,
        start_time=started,
        end_time=started + timedelta(seconds=elapsed),
        latencies=latencies,
        actual_qps=report.requests / elapsed,
        requested_qps=0.0,
        request_count=report.requests,
        error_count=status_errors + sum(transport.values()),
        load_generator=LoadGenerator.WRK,
        connections=client.connections,
        mesh_config_id=identities.mesh_config_id(mesh),
        env_id=identities.env_id(environment),
        labels=dict(config.labels),
        http_status_counts=codes,
        transport_error_counts=transport,
        histogram=histogram,
        mesh=mesh,
        environment=environment,
        config=config,
    )


async def run_wrk(
    config: TestConfig,
    *,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
    threads: int = 1,
) -> PerformanceResult:
    """Run `wrk -t threads -c N -d Ds --latency` with the JSON hook and normalise its report."""
    check_supported(config)
    binary = wrk_path()
    if binary is None:
        raise WrkUnavailableError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    client = config.clients[0]
    connections = max(client.connections, threads)
    seconds = max(1, math.ceil(config.duration_s))
    timeout = max(1, math.ceil(client.request_timeout_s))
    with TemporaryDirectory(prefix="meshplane-wrk-") as folder:
        script = Path(folder) / "report.lua"
        script.write_text(_script(config))
        argv = [
            binary,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={timeout}s",
            "--latency",
            "-s",
            str(script),
            client.endpoint_urls[0],
        ]
        log.info("perf.wrk.start", test_id=config.id, argv=argv)
        started = datetime.now(UTC)
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}: {err.decode(errors='replace')}")
    return normalise(
        parse_report(out.decode(errors="replace")),
        config,
        started=started,
        mesh=mesh,
        environment=environment,
    )
