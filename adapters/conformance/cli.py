"""`meshplane conformance`: run the adapter conformance suite and print a pass/fail table.

Exit code 0 when every check passed (or was skipped), 1 when any failed, 2 when the suite could
not run at all (bad flags, unreadable kubeconfig, no adapter at the address).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from adapters.conformance.checks import CHECK_NAMES, CHECKS
from adapters.conformance.cluster_view import ClusterViewError
from adapters.conformance.reporting import as_json, as_table
from adapters.conformance.suite import AdapterUnreachable, SuiteReport, run_suite
from adapters.conformance.suite_config import SuiteConfig
from serving import (
    InsecureTransportError,
    add_client_tls_arguments,
    client_tls_from_args,
    configure_logging,
    dial,
)

__all__ = ["EXIT_CANNOT_RUN", "EXIT_FAILED", "main", "register"]

EXIT_FAILED = 1
EXIT_CANNOT_RUN = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane conformance`."""
    checks = "\n".join(f"  {c.name:<24} {c.proves}" for c in CHECKS)
    parser = subparsers.add_parser(
        "conformance",
        help="check that a mesh adapter implements the meshplane adapter contract",
        description="Run the adapter conformance suite against a running adapter. It installs "
        "the mesh, every operation that supports delete (and deletes it again), and finally "
        "uninstalls the mesh, reading the cluster through --kubeconfig to check that nothing "
        "is left behind. Use a disposable cluster.\n\nchecks:\n" + checks,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--adapter", required=True, metavar="HOST:PORT", help="adapter address")
    parser.add_argument(
        "--kubeconfig",
        required=True,
        type=Path,
        metavar="PATH",
        help="kubeconfig of the cluster the adapter manages (the suite reads it to judge)",
    )
    parser.add_argument("--context", default="", help="kubeconfig context (default: current)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="CHECK",
        help="run only this check (repeatable, or comma-separated)",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument(
        "--operation-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="bound for each operation to reach a terminal state (default 300)",
    )
    parser.add_argument(
        "--prompt-seconds",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="ApplyOperation must answer within this (default 2)",
    )
    parser.add_argument("--mesh-version", default="", help="mesh version to install")
    parser.add_argument(
        "--send-kubeconfig",
        action="store_true",
        help="name the cluster in every request (Cluster.kubeconfig) instead of relying on the "
        "adapter's own configured cluster (the adapter must run with --allow-request-kubeconfigs "
        "and --allowed-cluster-servers naming the cluster's API server)",
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=10.0, metavar="SECONDS", help="default 10"
    )
    parser.add_argument("--log-level", default="warning", help="log level on stderr")
    add_client_tls_arguments(parser)
    parser.set_defaults(run=main)


def _only(values: list[str]) -> frozenset[str]:
    return frozenset(name.strip() for value in values for name in value.split(",") if name.strip())


def main(args: argparse.Namespace) -> int:
    """Run the suite as the flags say; print the report on stdout."""
    configure_logging(level=args.log_level)
    only = _only(args.only)
    unknown = sorted(only - set(CHECK_NAMES))
    if unknown:
        print(
            f"meshplane conformance: unknown check {', '.join(unknown)}; "
            f"checks: {', '.join(CHECK_NAMES)}",
            file=sys.stderr,
        )
        return EXIT_CANNOT_RUN
    if not args.kubeconfig.is_file():
        print(f"meshplane conformance: no kubeconfig at {args.kubeconfig}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    config = SuiteConfig(
        kubeconfig=args.kubeconfig,
        kube_context=args.context,
        only=only,
        operation_timeout=args.operation_timeout,
        prompt_seconds=args.prompt_seconds,
        mesh_version=args.mesh_version,
        send_kubeconfig=args.send_kubeconfig,
    )

    async def run() -> SuiteReport:
        channel = dial(
            args.adapter, tls=client_tls_from_args(args), allow_insecure=args.allow_insecure
        )
        async with channel:
            return await run_suite(
                args.adapter, config, channel=channel, connect_timeout=args.connect_timeout
            )

    try:
        report = asyncio.run(run())
    except (AdapterUnreachable, ClusterViewError, InsecureTransportError, ValueError) as exc:
        print(f"meshplane conformance: {exc}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    print(as_json(report) if args.output == "json" else as_table(report))
    return 0 if report.passed else EXIT_FAILED
