"""`meshplane up`: a whole meshplane on one machine, as child processes of one command.

It starts the sandbox (`coordinator.sandbox.up`: a cluster, every available adapter, the
coordinator), prints where everything listens and a first command to try, and keeps the
children running (`coordinator.sandbox.supervision`). Ctrl-C or SIGTERM stops them in reverse
order; so does a child that keeps exiting. A lock on the data directory keeps a second `up` from
using the same one. Every child writes stdout to ``<data-dir>/logs/<name>.out`` and its log to
``<name>.log``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

from coordinator.sandbox.children import SandboxError
from coordinator.sandbox.ports import DEFAULT_PORT_BASE, candidate_meshes, port_base_fits
from coordinator.sandbox.settings import KUBE_KINDS, SandboxSettings
from coordinator.sandbox.up import Sandbox
from serving.logging_setup import configure_logging

__all__ = ["register"]

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130
_Result = TypeVar("_Result")


def _chart_repo(text: str) -> tuple[str, str]:
    mesh, sep, url = text.partition("=")
    if not sep or not mesh.strip() or not url.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not MESH=URL")
    return mesh.strip().lower(), url.strip()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane up`."""
    parser = subparsers.add_parser(
        "up",
        help="run kubesim, the adapters and the coordinator together (a local sandbox)",
        description="Start a simulated cluster (unless --kubeconfig), every available mesh "
        "adapter and the coordinator as child processes; Ctrl-C stops them all.",
    )
    _add_cluster_arguments(parser)
    _add_adapter_arguments(parser)
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="warning"
    )
    parser.set_defaults(run=_run)


def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Which cluster, and where the sandbox keeps its state."""
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="use this cluster instead of kubesim"
    )
    parser.add_argument(
        "--kube",
        choices=KUBE_KINDS,
        default="sim",
        help="the cluster to start without --kubeconfig: sim (kubesim, the default) or real "
        "(`meshplane kube up`: the real control plane `make kube` builds; docs/realkube.md)",
    )
    parser.add_argument(
        "--allow-host-network",
        action="store_true",
        help="with --kube real: start outside a loopback-only network namespace",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".data"), help="state and logs (default ./.data)"
    )


def _add_adapter_arguments(parser: argparse.ArgumentParser) -> None:
    """Where adapters find charts, their ports, and which meshes to start."""
    parser.add_argument(
        "--chart-repo",
        type=_chart_repo,
        action="append",
        default=[],
        metavar="MESH=URL",
        help="chart repository of one mesh's adapter (repeatable)",
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        default=None,
        metavar="DIR",
        help="offline mirror: DIR/charts/<mesh>/ Helm repositories plus apps/ and addons/",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help=f"coordinator port; kubesim on +1, adapters from +2 (default {DEFAULT_PORT_BASE})",
    )
    parser.add_argument(
        "--mesh",
        action="append",
        default=None,
        help=f"only this mesh's adapter (repeatable; default: try {', '.join(candidate_meshes())})",
    )


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What makes the flags unusable, in a sentence; None when they are fine."""
    if args.mirror is not None and not args.mirror.is_dir():
        return f"--mirror {args.mirror} is not a directory"
    if not port_base_fits(args.port_base):
        return f"--port-base {args.port_base} leaves no room"
    if args.kube == "real" and args.kubeconfig is not None:
        return "--kube real starts its own cluster; drop --kubeconfig"
    return None


def _run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level, json=False)
    problem = _usage_problem(args)
    if problem is not None:
        print(f"meshplane up: {problem}", file=sys.stderr)
        return _EXIT_USAGE
    meshes = tuple(m.lower() for m in args.mesh) if args.mesh else candidate_meshes()
    settings = SandboxSettings(
        data_dir=args.data_dir.absolute(),
        kubeconfig=args.kubeconfig,
        chart_repos=dict(args.chart_repo),
        mirror=args.mirror.absolute() if args.mirror is not None else None,
        port_base=args.port_base,
        meshes=meshes,
        kube=args.kube,
        allow_host_network=args.allow_host_network,
    )
    return asyncio.run(_serve(Sandbox(settings)))


@contextlib.contextmanager
def _stopped_by_signals(stop: asyncio.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop`` (instead of raising) while inside."""
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


async def _unless_stopped(
    work: Coroutine[Any, Any, _Result], stop: asyncio.Event
) -> asyncio.Future[_Result] | None:
    """Run ``work`` until it ends (its finished future) or ``stop`` is set (None: ``work`` was
    cancelled and has wound down)."""
    running = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if running.done():
        return running
    running.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await running
    return None


async def _serve(sandbox: Sandbox) -> int:
    stop = asyncio.Event()
    with _stopped_by_signals(stop):
        started = await _unless_stopped(sandbox.start(), stop)
        if started is None:
            await sandbox.stop()
            return _EXIT_INTERRUPTED
        try:
            started.result()
        except SandboxError as exc:
            print(f"meshplane up: {exc}", file=sys.stderr)
            return _EXIT_FAILED
        async with contextlib.AsyncExitStack() as running:
            running.push_async_callback(sandbox.stop)
            print(sandbox.summary(), flush=True)
            return await _supervise(sandbox, stop)


async def _supervise(sandbox: Sandbox, stop: asyncio.Event) -> int:
    """Keep the children running until stopped (0), or until one keeps exiting (1)."""
    exited = await _unless_stopped(sandbox.supervise(), stop)
    if exited is None:  # a restart in progress has ended before the children are stopped
        print("stopping...", flush=True)
        return 0
    child = exited.result()
    settings = sandbox.settings
    print(
        f"meshplane up: {child.name} exited with {child.process.returncode} after "
        f"{settings.max_restarts} restarts within {settings.restart_window_seconds:g}s; "
        f"stopping everything (see {child.log_path})",
        file=sys.stderr,
    )
    return _EXIT_FAILED
