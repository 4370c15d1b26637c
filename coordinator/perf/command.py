"""`meshplane perf`: run load tests through the coordinator, list, show and compare results.

`run`, `results`, `get` and `compare` call the coordinator (``--coordinator``, else
``$MESHPLANE_COORDINATOR``, else 127.0.0.1:10100). `import` reads a fortio JSON file and writes
the normalised result straight into the coordinator's store (``--store``, else the coordinator's
own default), because the coordinator service has no RPC that accepts a finished result.
``--output json|yaml`` prints the SMP-shaped document (`results`: an object whose ``results``
lists them, like the other commands' lists); progress lines then go to stderr so stdout stays
one document.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

from coordinator.client.channel import (
    EXIT_FAILED,
    Command,
    add_connection_arguments,
    run_on_coordinator,
)
from coordinator.client.output import Column, Listing, add_listing_arguments, print_listing
from coordinator.perf import (
    Comparison,
    ComparisonCell,
    ComparisonRow,
    MeshInfo,
    PerformanceResult,
    Progress,
    add_output_argument,
    add_run_arguments,
    comparison_document,
    comparison_table,
    config_from_arguments,
    config_to_proto,
    format_progress,
    format_result,
    load_fortio_file,
    render,
    result_document,
    result_from_proto,
)
from coordinator.perf.arguments import error_verdict, histogram_text
from coordinator.perf.plotting import PlotError, load_text, plot_comparison, plot_result
from coordinator.perf.service import save_result
from coordinator.store import open_store
from coordinator.store.location import DATA_DIR_ENV, STORE_ENV, STORE_FILE
from meshplane.perf.v1 import perf_pb2 as pb
from serving.logging_setup import configure_logging

__all__ = ["register"]

_FULL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_RESOLVE_PAGE = 500

# Time a run may take beyond its configured duration (connecting, draining, storing).
RUN_SLACK_S = 60.0


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    add_connection_arguments(
        parser,
        call_timeout_help="deadline of each query (default 30; `run` waits for its duration "
        "plus 60 s)",
    )


_Adder = Callable[[str, Command, str], argparse.ArgumentParser]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane perf` with run, results, get, compare and import."""
    perf = subparsers.add_parser(
        "perf",
        help="performance tests (SMP format): run, results, get, compare, import",
        description="Generate HTTP/gRPC load through the coordinator and compare stored results.",
    )
    commands = perf.add_subparsers(dest="perf_command", metavar="SUBCOMMAND")
    commands.required = True
    add = _remote_adder(commands)
    add_run_arguments(
        add("run", _run_test, "run a load test from the coordinator and store its result")
    )
    _results_arguments(add("results", _results, "list stored results, newest first"))
    _get_arguments(add("get", _get, "show one stored result"))
    _compare_arguments(
        add("compare", _compare, "compare stored results; the first is the baseline")
    )
    _register_import(commands)


def _remote_adder(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> _Adder:
    """A function adding one subcommand that runs against the coordinator."""

    def add(name: str, command: Command, help: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help, description=help)
        _connection_arguments(parser)
        parser.set_defaults(run=lambda args: _run_remote(command, args))
        return parser

    return add


def _results_arguments(results: argparse.ArgumentParser) -> None:
    results.add_argument("--mesh", default="", help="only results against this mesh type")
    results.add_argument("--test-id", default="", help="only results of this test")
    results.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="(repeatable)"
    )
    results.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    add_listing_arguments(results)


def _get_arguments(get: argparse.ArgumentParser) -> None:
    get.add_argument("id", metavar="ID", help="result id, a unique prefix of it, or the test name")
    get.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="also draw its histogram, percentiles and timeline (.svg, .png or .pdf)",
    )
    add_output_argument(get)


def _compare_arguments(compare: argparse.ArgumentParser) -> None:
    compare.add_argument(
        "ids", nargs="+", metavar="ID", help="two or more result ids, unique prefixes or names"
    )
    compare.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="FILE",
        help="also draw their percentile curves overlaid (.svg, .png or .pdf)",
    )
    add_output_argument(compare)


def _register_import(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`perf import`: local, it writes to the store itself (no coordinator call)."""
    imported = commands.add_parser(
        "import",
        help="store a fortio result file (written to the coordinator's store directly)",
        description="Normalise a fortio JSON result (`fortio load -json FILE`) to milliseconds "
        "and store it where the coordinator keeps results.",
    )
    imported.add_argument("file", type=Path, metavar="FILE")
    imported.add_argument(
        "--fortio", action="store_true", required=True, help="FILE is fortio's JSON output"
    )
    imported.add_argument(
        "--store",
        default=None,
        metavar="PATH_OR_URL",
        help=f"the coordinator's store [env {STORE_ENV}, default <data-dir>/{STORE_FILE}]",
    )
    imported.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the coordinator's data directory [env {DATA_DIR_ENV}, default .data]",
    )
    imported.add_argument("--mesh", default="", help="mesh type the test ran against")
    imported.add_argument("--mesh-version", default="", help="its version")
    add_output_argument(imported)
    imported.set_defaults(run=_import)


# -- running a command ------------------------------------------------------------------------


def _fail(args: argparse.Namespace, message: str, code: int = EXIT_FAILED) -> int:
    print(f"meshplane perf {args.perf_command}: {message}", file=sys.stderr)
    return code


def _run_remote(command: Command, args: argparse.Namespace) -> int:
    """Dial the coordinator, run the command, turn transport problems into one line."""
    return run_on_coordinator(
        command,
        args,
        fail=lambda message, code: _fail(args, message, code),
        unavailable_hint="set --coordinator",
        usage_errors=(argparse.ArgumentTypeError, PlotError),
    )


def _progress(message: pb.PerformanceProgress) -> Progress:
    return Progress(
        test_id=message.test_id,
        elapsed_s=message.elapsed.ToNanoseconds() / 1e9,
        requests=message.requests,
        errors=message.errors,
        current_qps=message.current_qps,
    )


async def _run_test(stub: Any, args: argparse.Namespace) -> int:
    config = config_from_arguments(args)
    request = pb.RunPerformanceTestRequest(config=config_to_proto(config), mesh=args.mesh)
    timeout = None if config.request_count > 0 else config.duration_s + RUN_SLACK_S
    progress_out = sys.stdout if args.output == "table" else sys.stderr
    result: PerformanceResult | None = None
    async for response in stub.RunPerformanceTest(request, timeout=timeout):
        if response.HasField("progress"):
            print(format_progress(_progress(response.progress)), file=progress_out, flush=True)
        elif response.HasField("result"):
            result = result_from_proto(response.result)
    if result is None:
        return _fail(args, "the coordinator ended the test without a result")
    sys.stdout.write(format_result(result, args.output))
    verdict = error_verdict(result, args.max_error_rate)
    if verdict is not None:
        return _fail(args, f"result {result.id}: {verdict}")
    return 0


def _labels(items: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"--label must look like KEY=VALUE: {item!r}")
        labels[key.strip()] = value.strip()
    return labels


def _results_listing(results: list[PerformanceResult]) -> Listing:
    headers = ("ID", "NAME", "STARTED", "MESH", "LOAD", "REQUESTS", "ERRORS", "REQ/S", "P50 MS")
    return Listing(
        columns=[
            *(Column(header=header) for header in headers),
            Column(header="P99 MS"),
            Column(header="FULL ID", wide=True),
        ],
        rows=[
            [
                r.id[:8],
                (r.config.name if r.config is not None else "") or "-",
                r.start_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                f"{r.mesh.type} {r.mesh.version}".strip() if r.mesh else "none",
                load_text(r),
                str(r.request_count),
                str(r.error_count),
                f"{r.actual_qps:.1f}",
                f"{r.latencies.p50_ms:.3f}" if r.request_count else "-",
                f"{r.latencies.p99_ms:.3f}" if r.request_count else "-",
                r.id,
            ]
            for r in results
        ],
        names=[f"result/{r.id}" for r in results],
        # An object like every other command's output (room for more keys, e.g. paging).
        document={"results": [result_document(r) for r in results]},
    )


async def _results(stub: Any, args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise argparse.ArgumentTypeError(f"--limit must be at least 1, got {args.limit}")
    request = pb.ListPerformanceResultsRequest(
        labels=_labels(args.label),
        test_id=args.test_id,
        mesh_type=args.mesh,
        page_size=args.limit,
    )
    response = await stub.ListPerformanceResults(request, timeout=args.call_timeout)
    results = [result_from_proto(message) for message in response.results]
    print_listing(_results_listing(results), args)
    return 0


async def _get(stub: Any, args: argparse.Namespace) -> int:
    (result_id,) = await _resolve(stub, [args.id], args.call_timeout)
    response = await stub.GetPerformanceResult(
        pb.GetPerformanceResultRequest(id=result_id), timeout=args.call_timeout
    )
    result = result_from_proto(response.result)
    sys.stdout.write(format_result(result, args.output))
    if args.output == "table":
        sys.stdout.write(histogram_text(result))
    if args.plot is not None:
        plot_result(result, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


async def _resolve(stub: Any, references: list[str], call_timeout: float) -> list[str]:
    """Full result ids for ids, unique id prefixes (as tables show them) or test names."""
    listed: list[PerformanceResult] | None = None
    resolved = []
    for reference in references:
        if _FULL_ID.fullmatch(reference):
            resolved.append(reference)
            continue
        if listed is None:
            response = await stub.ListPerformanceResults(
                pb.ListPerformanceResultsRequest(page_size=_RESOLVE_PAGE), timeout=call_timeout
            )
            listed = [result_from_proto(message) for message in response.results]
        matches = [
            r
            for r in listed
            if r.id.startswith(reference) or (r.config is not None and r.config.name == reference)
        ]
        shown = reference[:60]
        if not matches:
            raise argparse.ArgumentTypeError(
                f"no stored result has the id, id prefix or name {shown!r} "
                "(see `meshplane perf results`)"
            )
        if len({r.id for r in matches}) > 1:
            candidates = ", ".join(r.id[:12] for r in matches[:5])
            raise argparse.ArgumentTypeError(
                f"{shown!r} matches {len(matches)} results ({candidates}); give more of the id"
            )
        resolved.append(matches[0].id)
    return resolved


def _comparison(message: pb.ComparePerformanceResultsResponse) -> Comparison:
    return Comparison(
        ids=tuple(message.ids),
        rows=tuple(
            ComparisonRow(
                metric=row.metric,
                unit=row.unit,
                cells=tuple(
                    ComparisonCell(
                        result_id=cell.result_id,
                        value=cell.value,
                        relative_difference=(
                            cell.relative_difference
                            if cell.HasField("relative_difference")
                            else None
                        ),
                    )
                    for cell in row.cells
                ),
            )
            for row in message.rows
        ),
    )


async def _compare(stub: Any, args: argparse.Namespace) -> int:
    if len(args.ids) < 2:
        raise argparse.ArgumentTypeError("compare needs at least two result ids")
    ids = await _resolve(stub, args.ids, args.call_timeout)
    response = await stub.ComparePerformanceResults(
        pb.ComparePerformanceResultsRequest(ids=ids), timeout=args.call_timeout
    )
    comparison = _comparison(response)
    results = [
        result_from_proto(
            (
                await stub.GetPerformanceResult(
                    pb.GetPerformanceResultRequest(id=result_id), timeout=args.call_timeout
                )
            ).result
        )
        for result_id in comparison.ids
    ]
    if args.output == "table":
        sys.stdout.write(comparison_table(comparison))
        for result in results:
            print(f"{result.id[:8]}  load: {load_text(result)}")
        if len({load_text(r) for r in results}) > 1:
            print("note: the runs had different loads; compare like with like", file=sys.stderr)
    else:
        document = comparison_document(comparison)
        document["loads"] = {r.id: load_text(r) for r in results}
        sys.stdout.write(render(document, args.output))
    if args.plot is not None:
        plot_comparison(results, args.plot)
        print(f"plot written to {args.plot}", file=sys.stderr)
    return 0


def _store_location(args: argparse.Namespace) -> str:
    """The coordinator's rule: --store, else its env, else <data dir>/coordinator.db."""
    if args.store:
        return str(args.store)
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    data_dir = args.data_dir or Path(os.environ.get(DATA_DIR_ENV) or ".data")
    data_dir.mkdir(parents=True, exist_ok=True)
    return str(data_dir / STORE_FILE)


def _import(args: argparse.Namespace) -> int:
    configure_logging(level="warning", json=False)  # stdout carries only the result
    mesh = MeshInfo(type=args.mesh, version=args.mesh_version) if args.mesh else None
    try:
        result = load_fortio_file(args.file, mesh=mesh)
    except (OSError, ValueError) as exc:
        return _fail(args, f"{args.file}: {exc}")

    async def store_it(location: str) -> None:
        store = open_store(location)
        try:
            await store.migrate()
            await save_result(store, result)
        finally:
            await store.close()

    try:
        asyncio.run(store_it(_store_location(args)))
    except Exception as exc:  # the store's own errors name the location and the cause
        return _fail(args, f"could not store the result: {exc}")
    sys.stdout.write(format_result(result, args.output))
    return 0
