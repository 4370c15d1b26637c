"""`meshplane kube up`: run a real Kubernetes control plane until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

import structlog

from realkube.binaries import MissingBinaries, find_binaries
from realkube.control_plane import ControlPlane, ControlPlaneError, ControlPlaneSettings
from realkube.network_namespace import loopback_only_reason

READY_LINE = "kube-apiserver serving at "
"""The first stdout line once the control plane is usable (then the kubeconfig line)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "kube",
        help="run a real Kubernetes control plane (etcd, API server, controllers, fake nodes)",
        description="A real Kubernetes control plane built by `make kube`: etcd, "
        "kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake nodes), on "
        "127.0.0.1. See docs/realkube.md.",
    )
    actions = parser.add_subparsers(dest="kube_command", metavar="ACTION")
    actions.required = True
    up = actions.add_parser("up", help="start it and wait for SIGTERM or Ctrl-C")
    up.add_argument(
        "--kubeconfig-out",
        type=Path,
        required=True,
        metavar="PATH",
        help="where to write the admin kubeconfig (mode 0600)",
    )
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="etcd data, certificates and logs (default: a temporary directory, removed after)",
    )
    up.add_argument("--nodes", type=int, default=1, help="fake Nodes to create (default 1)")
    up.add_argument(
        "--port", type=int, default=0, help="the API server's port on 127.0.0.1 (0: any free)"
    )
    up.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help="where the binaries are (default $MESHPLANE_KUBE_BIN or .tools/kube/bin)",
    )
    up.add_argument(
        "--allow-host-network",
        action="store_true",
        help="start even when this network namespace has interfaces besides loopback "
        "(webhook calls to ClusterIPs and fake Pod IPs could then leave the machine)",
    )
    up.set_defaults(run=run_up)


def run_up(args: argparse.Namespace) -> int:
    # stdout carries where it listens (the product); logs go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    if not 0 <= args.nodes <= 1000:
        print("meshplane kube up: --nodes must be between 0 and 1000", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print("meshplane kube up: --port must be between 0 and 65535", file=sys.stderr)
        return 2
    if not args.allow_host_network:
        reason = loopback_only_reason()
        if reason is not None:
            print(f"meshplane kube up: refusing to start: {reason}", file=sys.stderr)
            return 1
    try:
        binaries = find_binaries(args.bin_dir)
    except MissingBinaries as exc:
        print(f"meshplane kube up: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="meshplane-kube-") as scratch:
        settings = ControlPlaneSettings(
            binaries=binaries,
            data_dir=(args.data_dir or Path(scratch)).absolute(),
            kubeconfig_out=args.kubeconfig_out.absolute(),
            nodes=args.nodes,
            port=args.port,
            allow_host_network=args.allow_host_network,
        )
        return _serve(ControlPlane(settings=settings))


def _serve(plane: ControlPlane) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()
        raise KeyboardInterrupt  # interrupts a start in progress; the start cleans up

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            plane.start()
        except ControlPlaneError as exc:
            print(f"meshplane kube up: {exc}", file=sys.stderr)
            return 1
        print(f"{READY_LINE}{plane.url}", flush=True)
        print(f"kubeconfig: {plane.kubeconfig}", flush=True)
        print(f"etcd: {plane.etcd_url}", flush=True)
        print(f"data: {plane.settings.data_dir} (logs under {plane.logs})", flush=True)
        print("Ctrl-C or SIGTERM stops everything.", flush=True)
        while not stop.wait(1.0):
            exited = next((c for c in plane.components if c.process.poll() is not None), None)
            if exited is not None:
                print(
                    f"meshplane kube up: {exited.name} exited with {exited.process.returncode}; "
                    f"stopping everything (see {exited.log_path})",
                    file=sys.stderr,
                )
                return 1
        return 0
    except KeyboardInterrupt:
        return 0 if stop.is_set() else 130
    finally:
        for sig in previous:  # a second signal must not cut the ordered stop short
            signal.signal(sig, signal.SIG_IGN)
        plane.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
