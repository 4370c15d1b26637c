"""What a replica says it is: its link proof, GetInfo and ListOperations, read in one deadline."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from coordinator.server.adapter_link import AdapterLink
from coordinator.server.replicas import Replica
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc

__all__ = ["ReplicaIdentity", "identify", "with_identity"]


@dataclass(frozen=True, kw_only=True)
class ReplicaIdentity:
    """A replica's GetInfo answer and its catalogue."""

    info: adapter_pb.GetInfoResponse
    operations: tuple[adapter_pb.OperationDescriptor, ...]


async def identify(
    channel: Any, address: str, *, seconds: float, link: AdapterLink | None
) -> ReplicaIdentity:
    """Ask the replica (after it proves it holds the link token, when there is one).

    Raises `LinkRefused` when it does not prove it, ``grpc.aio.AioRpcError`` when a call fails.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    def remaining() -> float:
        return max(0.0, deadline - loop.time())

    if link is not None:
        await link.verify(channel, address, remaining())
    stub = adapter_grpc.MeshAdapterServiceStub(channel)
    info = await stub.GetInfo(adapter_pb.GetInfoRequest(), timeout=remaining())
    listed = await stub.ListOperations(adapter_pb.ListOperationsRequest(), timeout=remaining())
    return ReplicaIdentity(info=info, operations=tuple(listed.operations))


def with_identity(replica: Replica, identity: ReplicaIdentity) -> Replica:
    """The snapshot with what the replica said about itself."""
    info = identity.info
    return replace(
        replica,
        adapter_version=info.adapter_version,
        contract_version=info.contract_version,
        git_sha=info.git_sha,
        capabilities=tuple(info.capabilities),
        event_stream_id=info.event_stream_id,
        operations=identity.operations,
    )
