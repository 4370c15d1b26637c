"""`meshplane kubesim`: serve a simulated cluster until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

import structlog

from kubesim.faults import Faults
from kubesim.server import KubeSim, SimConfig
from kubesim.tokens import ISSUER, parse_token_file

FAULTS_ENV = "KUBESIM_FAULTS"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "kubesim",
        help="serve a simulated Kubernetes API server",
        description="A simulated Kubernetes API server with kwok-style "
        "controllers, for tests and the sandbox.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=6443, help="port (0: any free port)")
    parser.add_argument(
        "--kubeconfig-out",
        type=Path,
        default=None,
        help="where to write the kubeconfig (default: a temporary file)",
    )
    parser.add_argument(
        "--ready-delay",
        type=float,
        default=0.2,
        help="seconds before simulated pods become ready (0 allowed)",
    )
    parser.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="JSON file that keeps the cluster across restarts",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a generated CA written into the kubeconfig",
    )
    parser.add_argument(
        "--faults", default=None, help=f"fault injection settings as JSON (also ${FAULTS_ENV})"
    )
    parser.add_argument(
        "--no-aggregated-discovery",
        dest="aggregated_discovery",
        action="store_false",
        help="serve only the per-group-version discovery documents, as servers before 1.30",
    )
    parser.add_argument(
        "--token-auth-file",
        type=Path,
        default=None,
        help='static tokens for TokenReview, one `token,user,uid,"group1,group2"` per line '
        "(kube-apiserver's format; re-read when it changes)",
    )
    parser.add_argument(
        "--api-audiences",
        default=ISSUER,
        help=f"comma-separated audiences of the API server itself (default: the issuer, {ISSUER})",
    )
    parser.set_defaults(run=run)


def configure_logging() -> None:
    """Log lines to stderr (stdout carries the URL and kubeconfig path, the product), with
    plain tracebacks: structlog's default rich ones render every frame's locals, stored objects
    among them, which took the event loop seconds per logged error."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.StackInfoRenderer(),
            structlog.dev.set_exc_info,
            structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


def run(args: argparse.Namespace) -> int:
    configure_logging()
    try:
        faults = Faults.from_json(args.faults or os.environ.get(FAULTS_ENV))
    except (ValueError, TypeError) as exc:
        print(f"kubesim: invalid faults: {exc}", file=sys.stderr)
        return 2
    if args.ready_delay < 0:
        print("kubesim: --ready-delay must be >= 0", file=sys.stderr)
        return 2
    if args.token_auth_file is not None:
        try:
            parse_token_file(args.token_auth_file.read_text())
        except (OSError, ValueError) as exc:
            print(f"kubesim: --token-auth-file {args.token_auth_file}: {exc}", file=sys.stderr)
            return 2
    audiences = tuple(a.strip() for a in args.api_audiences.split(",") if a.strip())
    if not audiences:
        print("kubesim: --api-audiences needs at least one audience", file=sys.stderr)
        return 2
    config = SimConfig(
        host=args.host,
        port=args.port,
        ready_delay=args.ready_delay,
        kubeconfig=args.kubeconfig_out,
        state_file=args.state_file,
        tls=args.tls,
        faults=faults,
        aggregated_discovery=args.aggregated_discovery,
        token_auth_file=args.token_auth_file,
        api_audiences=audiences,
    )
    # The store keeps many long-lived objects and each large request (a CRD) allocates
    # thousands more: with the default thresholds, collections over the stored objects took a
    # third of an Istio install's server time. Freeze the start-up heap, collect less often.
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    return asyncio.run(_serve(config))


async def _serve(config: SimConfig) -> int:
    sim = KubeSim(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await sim.start()
    except OSError as exc:
        print(f"kubesim: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    print(f"kubesim serving at {sim.url}", flush=True)
    print(f"kubeconfig: {sim.kubeconfig}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0
