"""`meshplane rbac MESH`: print the least-privilege ClusterRole an adapter needs."""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from adapters.rbac.collecting import RbacError
from adapters.rbac.derivation import derive_for_mesh
from adapters.rbac.role_document import role_yaml
from serving.mesh_entry_points import mesh_names

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane rbac MESH`."""
    parser = subparsers.add_parser(
        "rbac",
        help="print the least-privilege ClusterRole an adapter needs",
        description="Render every chart version the adapter supports (and its manifests and "
        "built objects) and print the ClusterRole covering what applying, uninstalling and "
        "validating them uses. deploy/helm/meshplane/files/rbac-MESH.yaml is this output.",
    )
    meshes = ", ".join(mesh_names())
    parser.add_argument(
        "mesh", metavar="MESH", help=f"{meshes}, or package.module:NAME of a MeshDeclaration"
    )
    parser.add_argument("--chart-repo", default="", metavar="URL", help="chart repository")
    parser.add_argument("--mirror", type=Path, default=None, metavar="DIR", help="offline mirror")
    parser.add_argument("--manifests-url", default="", metavar="URL", help="manifests location")
    parser.add_argument("--cache-dir", type=Path, default=None, help="download cache")
    parser.add_argument("--name", default="", help="ClusterRole name (meshplane-adapter-MESH)")
    parser.add_argument("--log-level", default="warning", help="logs go to stderr (warning)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from adapters.kit.plan.planner import PlanError
    from adapters.kit.process.mesh_registry import UnknownMesh, load_declaration
    from serving.logging_setup import configure_logging

    try:
        declaration = load_declaration(args.mesh)
    except UnknownMesh as exc:
        print(f"meshplane rbac: {exc}", file=sys.stderr)
        return 2
    # Logs go to stderr: stdout is the ClusterRole.
    configure_logging(level=args.log_level, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="meshplane-rbac-") as scratch:
        try:
            requirements = asyncio.run(
                derive_for_mesh(
                    declaration,
                    chart_repo=args.chart_repo,
                    mirror=args.mirror,
                    manifests_url=args.manifests_url,
                    cache_dir=args.cache_dir or Path(scratch),
                )
            )
        except (RbacError, PlanError, OSError, RuntimeError) as exc:
            print(f"meshplane rbac: {exc}", file=sys.stderr)
            return 1
    sys.stdout.write(role_yaml(requirements, name=args.name))
    return 0
