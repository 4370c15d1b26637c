"""Command-line pieces for `meshplane perf`: flags -> TestConfig, result -> text/JSON/YAML.

The CLI command itself lives with the coordinator client (it runs the test through the
coordinator's RunPerformanceTest RPC); these helpers keep flag parsing and output in one place.
"""

from __future__ import annotations

import argparse

from coordinator.perf.documents import render, result_document
from coordinator.perf.identities import new_id
from coordinator.perf.results import (
    ClientConfig,
    LoadGenerator,
    PerformanceResult,
    Progress,
    Protocol,
    TestConfig,
)
from serving.durations import duration_argument

OUTPUTS = ("table", "json", "yaml")


parse_duration = duration_argument
"""A Go-style duration flag ("30s", "500ms", "2m", "1h30m" or plain seconds) -> seconds."""


def _pairs(values: list[str] | None, separator: str, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition(separator)
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(
                f"{what} must look like KEY{separator}VALUE: {value!r}"
            )
        result[key.strip()] = rest.strip()
    return result


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """--output table|json|yaml (json/yaml emit the SMP-shaped document)."""
    parser.add_argument(
        "--output",
        "-o",
        choices=OUTPUTS,
        default="table",
        help="table (default), or the SMP-shaped document as json or yaml",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `meshplane perf run`."""
    parser.add_argument("--url", required=True, help="http://host:port/path, or host:port for gRPC")
    parser.add_argument("--rps", type=float, default=0.0, help="constant rate; 0 = max-throughput")
    parser.add_argument("--connections", "-c", type=int, default=1, help="concurrent connections")
    parser.add_argument(
        "--duration", "-d", type=parse_duration, default=10.0, help="e.g. 30s, 500ms, 2m"
    )
    parser.add_argument("--requests", "-n", type=int, default=0, help="stop after N requests")
    parser.add_argument("--grpc-method", default="", help="package.Service/Method (gRPC unary)")
    parser.add_argument(
        "--generator", choices=("builtin", "wrk"), default="builtin", help="load generator"
    )
    parser.add_argument("--header", "-H", action="append", help="'Name: value' (repeatable)")
    parser.add_argument("--cookie", action="append", help="name=value (repeatable)")
    parser.add_argument("--body", default="", help="HTTP body, or the gRPC request as JSON")
    parser.add_argument("--content-type", default="", help="Content-Type of the HTTP body")
    parser.add_argument("--method", default="", help="HTTP method (default GET, POST with body)")
    parser.add_argument("--timeout", type=parse_duration, default=5.0, help="per-request timeout")
    parser.add_argument("--name", default="", help="test name")
    parser.add_argument("--label", action="append", help="key=value (repeatable)")
    parser.add_argument("--mesh", default="", help="adapter to ask for the mesh type and version")
    parser.add_argument(
        "--max-error-rate",
        type=parse_rate,
        default=None,
        metavar="RATE",
        help="exit 1 when more requests than this failed, e.g. 1%% or 0.01 (default: exit 1 "
        "when any request could not connect, or none was answered)",
    )
    add_output_argument(parser)


def parse_rate(text: str) -> float:
    """``"1%"`` or ``"0.01"`` -> 0.01, between 0 and 1."""
    value = text.strip()
    try:
        rate = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a rate: {value[:40]!r} (e.g. 1%, 0.01)") from None
    if not 0.0 <= rate <= 1.0:
        raise argparse.ArgumentTypeError(f"a rate is between 0 and 100%, got {value[:40]!r}")
    return rate


CONNECT_FAILURES = ("connection refused", "connect")
"""Transport error kinds meaning the target was never reached."""


def error_verdict(result: PerformanceResult, max_error_rate: float | None) -> str | None:
    """Why the run counts as failed for `perf run`'s exit code, or None when it passed."""
    attempts = result.request_count + sum(result.transport_error_counts.values())
    failed = result.error_count
    if max_error_rate is None:
        unreached = sum(result.transport_error_counts.get(kind, 0) for kind in CONNECT_FAILURES)
        if unreached:
            return f"{unreached} of {attempts} requests could not connect ({_errors(result)})"
        if result.request_count == 0:
            return f"no request was answered ({_errors(result)})"
        return None
    rate = failed / attempts if attempts else 1.0
    if rate > max_error_rate:
        return (
            f"{failed} of {attempts} requests failed ({rate:.2%}), more than --max-error-rate "
            f"{max_error_rate:.2%} ({_errors(result)})"
        )
    return None


def _errors(result: PerformanceResult) -> str:
    """What went wrong, named: ``connection refused: 200, http 503: 4``."""
    parts = [f"{kind}: {count}" for kind, count in sorted(result.transport_error_counts.items())]
    parts += [
        f"http {code}: {count}"
        for code, count in sorted(result.http_status_counts.items())
        if code.isdigit() and int(code) >= 400
    ]
    parts += [
        f"grpc {code}: {count}"
        for code, count in sorted(result.grpc_code_counts.items())
        if code != "OK"
    ]
    return ", ".join(parts) or "no errors"


def config_from_arguments(args: argparse.Namespace) -> TestConfig:
    """The TestConfig the `perf run` flags describe (gRPC when --grpc-method is given)."""
    protocol = Protocol.GRPC if args.grpc_method else Protocol.HTTP
    client = ClientConfig(
        protocol=protocol,
        endpoint_urls=(args.url,),
        load_generator=LoadGenerator(args.generator),
        connections=args.connections,
        rps=args.rps,
        headers=_pairs(args.header, ":", "--header"),
        cookies=_pairs(args.cookie, "=", "--cookie"),
        body=args.body,
        content_type=args.content_type,
        grpc_method=args.grpc_method,
        http_method=args.method,
        request_timeout_s=args.timeout,
    )
    return TestConfig(
        id=new_id(),
        name=args.name,
        labels=_pairs(args.label, "=", "--label"),
        duration_s=args.duration,
        request_count=args.requests,
        clients=(client,),
    )


def format_progress(progress: Progress) -> str:
    """One progress line."""
    return (
        f"{progress.elapsed_s:6.1f}s  {progress.requests:>9} requests  "
        f"{progress.current_qps:>9.1f} req/s  {progress.errors} errors"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}: {count}" for code, count in sorted(counts.items())) or "-"


def _ms(value: float, answered: bool) -> str:
    return f"{value:.3f}" if answered else "-"


def format_result(result: PerformanceResult, output: str = "table") -> str:
    """A result as a short human table, or as the SMP document in JSON or YAML."""
    if output != "table":
        return render(result_document(result), output)
    lat = result.latencies
    ok = result.request_count > 0  # latencies exist only for answered requests
    mesh = f"{result.mesh.type} {result.mesh.version}".strip() if result.mesh else "-"
    name = result.config.name if result.config is not None and result.config.name else "-"
    lines = [
        f"result      {result.id}",
        f"name        {name}",
        f"test        {result.test_id}",
        f"generator   {result.load_generator.value}, {result.connections} connections",
        f"mesh        {mesh}",
        f"started     {result.start_time.isoformat(timespec='seconds')}",
        f"requests    {result.request_count} answered, {result.error_count} errors",
        f"rate        {result.actual_qps:.1f} req/s actual, "
        + (f"{result.requested_qps:g} requested" if result.requested_qps else "max requested"),
        f"latency ms  min {_ms(lat.min_ms, ok)}  avg {_ms(lat.average_ms, ok)}  "
        f"p50 {_ms(lat.p50_ms, ok)}",
        f"            p75 {_ms(lat.p75_ms, ok)}  p90 {_ms(lat.p90_ms, ok)}",
        f"            p99 {_ms(lat.p99_ms, ok)}  p99.9 {_ms(lat.p999_ms, ok)}  "
        f"max {_ms(lat.max_ms, ok)}",
    ]
    if result.http_status_counts:
        lines.append(f"http codes  {_counts(dict(result.http_status_counts))}")
    if result.grpc_code_counts:
        lines.append(f"grpc codes  {_counts(dict(result.grpc_code_counts))}")
    if result.transport_error_counts:
        lines.append(f"no answer   {_counts(dict(result.transport_error_counts))}")
    return "\n".join(lines) + "\n"


def histogram_text(result: PerformanceResult, width: int = 40) -> str:
    """The latency histogram as terminal bars, one line per non-empty bucket."""
    filled = [b for b in result.histogram if b.count]
    if not filled:
        return ""
    most = max(b.count for b in filled)
    lines = ["latency histogram (ms)"]
    for bucket in filled:
        bar = "#" * max(1, round(bucket.count / most * width))
        span = f"{bucket.start_ms:g}-{bucket.end_ms:g}"
        lines.append(
            f"  {span:>15}  {bar:<{width}}  {bucket.count} ({bucket.cumulative_percent:.1f}%)"
        )
    return "\n".join(lines) + "\n"
