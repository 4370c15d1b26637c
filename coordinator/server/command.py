"""`meshplane coordinator`: run the coordinator server.

On start one JSON line on stdout gives the gRPC address, so scripts and `meshplane up` can read
where it listens (port 0 picks a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from coordinator.server.assembly import Coordinator, StartupError, run_coordinator
from coordinator.server.settings import (
    ADAPTERS_ENV,
    ENV_PREFIX,
    SettingsError,
    add_arguments,
    settings_from_args,
)
from serving import audit_log
from serving.garbage_collection import tune_for_server
from serving.logging_setup import configure_logging
from serving.tls import InsecureTransportError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane coordinator`."""
    parser = subparsers.add_parser(
        "coordinator",
        help="run the coordinator (gRPC CoordinatorService + adapter passthrough)",
        description="Run the coordinator: it knows every adapter replica (static --adapter "
        f"flags or {ADAPTERS_ENV}, RegisterAdapter, Kubernetes discovery), routes requests to "
        "healthy replicas and keeps operations and events. Every flag can also be set with an "
        f"environment variable {ENV_PREFIX}<FLAG> (upper case, '-' as '_').",
    )
    add_arguments(parser)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    audit_log.install_from_environment()
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"meshplane coordinator: {exc}", file=sys.stderr)
        return 2
    log_json = {"auto": None, "json": True, "console": False}[settings.log_format]
    configure_logging(level=settings.log_level, json=log_json)

    def announce(coordinator: Coordinator) -> None:
        line = {
            "grpc": coordinator.address,
            "store": settings.store_location if "://" not in settings.store_location else "url",
            "adapters": [f"{a.mesh}={a.address}" for a in settings.adapters],
            "metrics": coordinator.metrics_url,
        }
        print(json.dumps(line), flush=True)

    try:
        tune_for_server()
        asyncio.run(run_coordinator(settings, on_started=announce))
    except InsecureTransportError as exc:
        print(f"meshplane coordinator: {exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"meshplane coordinator: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"meshplane coordinator: {exc}", file=sys.stderr)
        return 1
    return 0
