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
    add_output_argument(parser)


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


def format_result(result: PerformanceResult, output: str = "table") -> str:
    """A result as a short human table, or as the SMP document in JSON or YAML."""
    if output != "table":
        return render(result_document(result), output)
    lat = result.latencies
    mesh = f"{result.mesh.type} {result.mesh.version}".strip() if result.mesh else "-"
    lines = [
        f"result      {result.id}",
        f"test        {result.test_id}",
        f"generator   {result.load_generator.value}, {result.connections} connections",
        f"mesh        {mesh}",
        f"started     {result.start_time.isoformat()}",
        f"requests    {result.request_count} ({result.error_count} errors)",
        f"rate        {result.actual_qps:.1f} req/s actual, "
        + (f"{result.requested_qps:g} requested" if result.requested_qps else "max requested"),
        f"latency ms  min {lat.min_ms:.3f}  avg {lat.average_ms:.3f}  p50 {lat.p50_ms:.3f}",
        f"            p75 {lat.p75_ms:.3f}  p90 {lat.p90_ms:.3f}",
        f"            p99 {lat.p99_ms:.3f}  p99.9 {lat.p999_ms:.3f}  max {lat.max_ms:.3f}",
    ]
    if result.http_status_counts:
        lines.append(f"http codes  {_counts(dict(result.http_status_counts))}")
    if result.grpc_code_counts:
        lines.append(f"grpc codes  {_counts(dict(result.grpc_code_counts))}")
    if result.transport_error_counts:
        lines.append(f"no answer   {_counts(dict(result.transport_error_counts))}")
    return "\n".join(lines) + "\n"
