"""`meshplane status MESH`: whether and how a mesh is installed, and its components' readiness."""

from __future__ import annotations

import argparse
from typing import Any

from coordinator.client.output import as_dict, print_document, print_table
from coordinator.client.subcommands import ClientSubcommands
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `status` to `meshplane`."""
    status = ClientSubcommands(subparsers).add(
        "status", _status, "show whether and how a mesh is installed"
    )
    status.add_argument("mesh", metavar="MESH")
    status.add_argument("--namespace", "-n", default="", help="control plane namespace")


async def _status(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.GetMeshStatus(
        cpb.GetMeshStatusRequest(
            mesh=args.mesh, request=apb.GetMeshStatusRequest(namespace=args.namespace)
        ),
        timeout=args.call_timeout,
    )
    if args.output != "table":
        print_document(as_dict(response), args.output)
        return 0
    status = response.status
    print(f"mesh:       {response.mesh}")
    print(f"cluster:    {status.cluster}")
    print(f"installed:  {'yes' if status.installed else 'no'}")
    if status.installed:
        print(f"version:    {status.version}")
        print(f"namespace:  {status.namespace}")
    injection = ", ".join(status.injection_namespaces) or "(none)"
    print(f"injection:  {injection}")
    if status.components:
        print()
        print_table(
            ["KIND", "NAMESPACE", "NAME", "READY", "MESSAGE"],
            [
                [c.kind, c.namespace, c.name, "yes" if c.ready else "no", c.message]
                for c in status.components
            ],
        )
    return 0
