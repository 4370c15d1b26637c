"""The coordinator's mesh RPCs: catalogues kept here, versions, status and rendering forwarded.

The forwarded ones are read-only, so a failed attempt is retried on another healthy replica.
"""

from __future__ import annotations

from typing import Any

from coordinator.server.identity.subjects import forwarded_identity
from coordinator.server.replicas import Replica
from coordinator.server.routing import long_call_seconds
from coordinator.server.rpc_group import RpcGroup
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as pb

__all__ = ["MeshRpcs"]


class MeshRpcs(RpcGroup):
    """ListOperations, ListMeshVersions, GetMeshStatus, RenderOperation."""

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        """Catalogues kept from each adapter's ListOperations (refreshed on reconnect)."""
        registry = self._parts.registry
        meshes = (
            [await self._known_mesh(context, request.mesh)] if request.mesh else registry.meshes()
        )
        return pb.ListOperationsResponse(
            catalogues=[
                pb.MeshCatalogue(mesh=mesh, operations=list(registry.catalogue(mesh)))
                for mesh in meshes
            ]
        )

    async def ListMeshVersions(
        self, request: pb.ListMeshVersionsRequest, context: Any
    ) -> pb.ListMeshVersionsResponse:
        """Forwarded to a healthy replica (read-only, so retried on another)."""
        mesh = await self._known_mesh(context, request.mesh)

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.ListMeshVersions(
                adapter_pb.ListMeshVersionsRequest(),
                timeout=seconds,
                metadata=forwarded_identity(),
            )

        answer = await self._route(context, mesh, invoke, retry=True, method="ListMeshVersions")
        return pb.ListMeshVersionsResponse(
            versions=list(answer.versions), default_version=answer.default_version
        )

    async def GetMeshStatus(
        self, request: pb.GetMeshStatusRequest, context: Any
    ) -> pb.GetMeshStatusResponse:
        """Forwarded to a healthy replica (read-only, so retried on another)."""
        mesh = await self._known_mesh(context, request.mesh)

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.GetMeshStatus(
                request.request, timeout=seconds, metadata=forwarded_identity()
            )

        answer = await self._route(context, mesh, invoke, retry=True, method="GetMeshStatus")
        return pb.GetMeshStatusResponse(mesh=mesh, status=answer)

    async def RenderOperation(
        self, request: pb.RenderOperationRequest, context: Any
    ) -> pb.RenderOperationResponse:
        """Forwarded to a healthy replica (read-only, so retried on another). Rendering charts
        takes time, so it has the caller's deadline (at most `LONG_CALL_SECONDS`)."""
        mesh = await self._known_mesh(context, request.mesh)
        seconds = long_call_seconds(context.time_remaining())

        async def invoke(replica: Replica, channel: Any, _: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.RenderOperation(
                request.request, timeout=seconds, metadata=forwarded_identity()
            )

        answer = await self._route(context, mesh, invoke, retry=True, method="RenderOperation")
        return pb.RenderOperationResponse(mesh=mesh, rendered=answer)
