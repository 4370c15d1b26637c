"""`meshplane adapter MESH`: run one mesh adapter.

MESH is a registered mesh (the `meshplane.meshes` entry points; only the requested mesh is
imported) or an import string ``package.module:NAME`` naming a `MeshDeclaration`. On start one
JSON line on stdout gives the gRPC and metrics addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.process.mesh_registry import UnknownMesh, known_meshes, load_declaration, resolve
from adapters.kit.process.server import ExecutorFactory, RunningAdapter, run_adapter
from adapters.kit.process.settings import (
    ENV_PREFIX,
    AdapterSettings,
    SettingsError,
    add_arguments,
    settings_from_args,
)
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.seam import ClusterExecutor, VersionCatalog
from serving import audit_log
from serving.garbage_collection import tune_for_server
from serving.logging_setup import configure_logging

__all__ = ["DEFAULT_EXECUTOR_FACTORY", "register"]

_log = structlog.get_logger(__name__)

DEFAULT_EXECUTOR_FACTORY = "adapters.kit.process.cli:real_executor_factory"
EXECUTOR_FACTORY_ENV = ENV_PREFIX + "EXECUTOR_FACTORY"


def real_executor_factory(
    declaration: MeshDeclaration, settings: AdapterSettings, metrics: AdapterMetrics
) -> tuple[ClusterExecutor, VersionCatalog]:
    """The production executor: charts, rendering and the apply engine (`run.executor`)."""
    from adapters.kit.process import executor_assembly  # only the adapter command needs it

    return executor_assembly.build_executor(
        declaration, settings, on_kubernetes_retry=metrics.kubernetes_retry
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane adapter`."""
    meshes = ", ".join(known_meshes())
    parser = subparsers.add_parser(
        "adapter",
        help="run a mesh adapter (gRPC MeshAdapterService)",
        description=f"Run the gRPC adapter for one service mesh ({meshes}). Every flag can also "
        f"be set with an environment variable {ENV_PREFIX}<FLAG> (upper case, '-' as '_').",
    )
    parser.add_argument(
        "mesh", metavar="MESH", help=f"{meshes}, or package.module:NAME of a MeshDeclaration"
    )
    parser.add_argument(
        "--executor-factory",
        default=None,
        metavar="MODULE:NAME",
        help=f"executor factory to use instead of the real one [env {EXECUTOR_FACTORY_ENV}]",
    )
    add_arguments(parser)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    audit_log.install_from_environment()
    try:
        declaration = load_declaration(args.mesh)
    except UnknownMesh as exc:
        print(f"meshplane adapter: {exc}", file=sys.stderr)
        return 2
    try:
        settings = settings_from_args(args, declaration)
    except SettingsError as exc:
        print(f"meshplane adapter: {exc}", file=sys.stderr)
        return 2
    log_json = {"auto": None, "json": True, "console": False}[settings.log_format]
    configure_logging(level=settings.log_level, json=log_json)
    factory_name = (
        args.executor_factory or os.environ.get(EXECUTOR_FACTORY_ENV) or DEFAULT_EXECUTOR_FACTORY
    )
    factory: ExecutorFactory = resolve(factory_name)

    def announce(adapter: RunningAdapter) -> None:
        line = {
            "mesh": declaration.mesh,
            "grpc": adapter.address,
            "metrics": adapter.metrics_url,
            "event_stream_id": adapter.events.stream_id,
        }
        print(json.dumps(line), flush=True)

    try:
        tune_for_server()
        asyncio.run(run_adapter(declaration, settings, factory, on_started=announce))
    except OSError as exc:
        _log.error("adapter.start_failed", mesh=declaration.mesh, error=str(exc))
        print(f"meshplane adapter: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0
