"""`meshplane template MESH OP`: the manifests an operation would apply, like `helm template`.

The coordinator routes RenderOperation to the mesh's adapter, which plans the operation exactly
as `apply` would (its charts, its manifests, for the adapter's cluster's Kubernetes version and
served APIs) and answers with multi-document YAML; nothing is applied or recorded. Secrets'
values come back redacted. ``-o json|yaml`` prints the whole answer (counts, resolved version and
namespace) as one document instead of the bare manifests.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from coordinator.client.channel import (
    Command,
    add_connection_arguments,
    run_client_command,
)
from coordinator.client.dry_run_output import DRY_RUN_SECONDS
from coordinator.client.hints import with_hints
from coordinator.client.operation_flags import (
    UsageError,
    add_request_flags,
    custom_body,
    parameters,
)
from coordinator.client.output import as_dict, print_document
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `template` to `meshplane`."""
    help_text = "print the manifests an operation would apply (like helm template)"
    parser = subparsers.add_parser("template", help=help_text, description=help_text)
    add_connection_arguments(parser, call_timeout_help="deadline of the request (default 300)")
    parser.add_argument("mesh", metavar="MESH")
    parser.add_argument("operation", metavar="OP", help="catalogue id (see `meshplane ops MESH`)")
    add_request_flags(parser)
    parser.add_argument(
        "--output",
        "-o",
        choices=("manifests", "json", "yaml"),
        default="manifests",
        help="manifests (default: the YAML documents), or the whole answer as json or yaml",
    )
    command: Command = _template
    parser.set_defaults(
        call_timeout=DRY_RUN_SECONDS,
        run=lambda args: run_client_command(with_hints(command), args, usage_errors=(UsageError,)),
    )


async def _template(stub: Any, args: argparse.Namespace) -> int:
    request = apb.RenderOperationRequest(
        operation=args.operation,
        mesh_version=args.mesh_version,
        namespace=args.namespace,
        parameters=parameters(args.param),
        custom_body=custom_body(args),
    )
    answer = await stub.RenderOperation(
        cpb.RenderOperationRequest(mesh=args.mesh, request=request), timeout=args.call_timeout
    )
    if args.output == "manifests":
        sys.stdout.write(answer.rendered.manifests)
        sys.stdout.flush()
    else:
        print_document(as_dict(answer), args.output)
    return 0
