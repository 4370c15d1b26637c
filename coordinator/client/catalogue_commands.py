"""`meshplane adapters|ops|versions`: what the coordinator's adapters offer.

``adapters`` lists every adapter replica with its state, version and event position; ``ops``
the operations each mesh's adapter offers; ``versions`` the installable versions of one mesh.
All three are listings (``-o table|wide|json|yaml|name``).
"""

from __future__ import annotations

import argparse
from typing import Any

from coordinator.client.output import Column, Listing, as_dict, local_time, print_listing
from coordinator.client.subcommands import ClientSubcommands
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `adapters`, `ops` and `versions` to `meshplane`."""
    commands = ClientSubcommands(subparsers)
    commands.add(
        "adapters",
        _adapters,
        "list adapters, their replicas, health and event positions",
        listing=True,
    )
    ops = commands.add("ops", _ops, "list the operations each mesh's adapter offers", listing=True)
    ops.add_argument("mesh", nargs="?", default="", metavar="MESH", help="only this mesh")
    versions = commands.add(
        "versions", _versions, "list the installable versions of a mesh", listing=True
    )
    versions.add_argument("mesh", metavar="MESH")


def _replica_state_name(value: int) -> str:
    return str(cpb.ReplicaState.Name(cpb.ReplicaState.ValueType(value))).removeprefix(
        "REPLICA_STATE_"
    )


async def _adapters(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=args.call_timeout)
    replicas = [(adapter, replica) for adapter in response.adapters for replica in adapter.replicas]
    listing = Listing(
        columns=[
            Column(header="MESH"),
            Column(header="ADDRESS"),
            Column(header="STATE"),
            Column(header="VERSION"),
            Column(header="EVENT STREAM", wide=True),
            Column(header="LAST EVENT", wide=True),
            Column(header="LAST ERROR"),
        ],
        rows=[
            [
                adapter.mesh,
                replica.address,
                _replica_state_name(replica.state),
                replica.adapter_version,
                replica.event_stream_id,
                str(replica.last_event_sequence),
                replica.last_error,
            ]
            for adapter, replica in replicas
        ],
        names=[f"adapter/{adapter.mesh}/{replica.address}" for adapter, replica in replicas],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0


def _parameters(descriptor: apb.OperationDescriptor) -> str:
    parts = []
    for parameter in descriptor.parameters:
        text = parameter.name + ("*" if parameter.required else "")
        if parameter.default_value:
            text += f"={parameter.default_value}"
        parts.append(text)
    return " ".join(parts)


async def _ops(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListOperations(
        cpb.ListOperationsRequest(mesh=args.mesh), timeout=args.call_timeout
    )
    entries = [(catalogue, op) for catalogue in response.catalogues for op in catalogue.operations]
    listing = Listing(
        columns=[
            Column(header="MESH"),
            Column(header="OPERATION"),
            Column(header="CATEGORY"),
            Column(header="DELETE", wide=True),
            Column(header="PARAMETERS", wide=True),
            Column(header="DESCRIPTION"),
        ],
        rows=[
            [
                catalogue.mesh,
                op.id,
                str(apb.OperationCategory.Name(op.category)).removeprefix("OPERATION_CATEGORY_"),
                "yes" if op.supports_delete else "no",
                _parameters(op),
                op.description,
            ]
            for catalogue, op in entries
        ],
        names=[f"operation/{catalogue.mesh}/{op.id}" for catalogue, op in entries],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0


async def _versions(stub: Any, args: argparse.Namespace) -> int:
    response = await stub.ListMeshVersions(
        cpb.ListMeshVersionsRequest(mesh=args.mesh), timeout=args.call_timeout
    )
    listing = Listing(
        columns=[
            Column(header="VERSION"),
            Column(header="APP VERSION"),
            Column(header="PRERELEASE"),
            Column(header="PUBLISHED", wide=True),
        ],
        rows=[
            [
                version.version
                + (" (default)" if version.version == response.default_version else ""),
                version.app_version,
                "yes" if version.prerelease else "",
                local_time(version.create_time),
            ]
            for version in response.versions
        ],
        names=[f"version/{args.mesh}/{version.version}" for version in response.versions],
        document=as_dict(response),
    )
    print_listing(listing, args)
    return 0
