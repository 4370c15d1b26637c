"""Small real servicers for exercising the server bootstrap (not the product's servicers)."""

from __future__ import annotations

import asyncio
from typing import Any

from meshplane.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from meshplane.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc

ADAPTER_SERVICE = "meshplane.adapter.v1.MeshAdapterService"
COORDINATOR_SERVICE = "meshplane.coordinator.v1.CoordinatorService"


class EchoAdapter(adapter_pb2_grpc.MeshAdapterServiceServicer):  # type: ignore[misc]
    """GetInfo answers at once; ApplyOperation can be held open to test in-flight draining."""

    def __init__(self, *, hold_apply: bool = False) -> None:
        self.hold_apply = hold_apply
        self.apply_entered = asyncio.Event()
        self.release_apply = asyncio.Event()
        self.journal: list[str] = []

    async def GetInfo(self, request: Any, context: Any) -> Any:
        return adapter_pb2.GetInfoResponse(mesh="echo", adapter_version="0.0.0")

    async def ApplyOperation(self, request: Any, context: Any) -> Any:
        self.apply_entered.set()
        if self.hold_apply:
            await self.release_apply.wait()
        self.journal.append("apply_finished")
        return adapter_pb2.ApplyOperationResponse(
            operation_id=request.operation_id or "op-1", created=True
        )


class EchoCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):  # type: ignore[misc]
    """Only ListAdapters, enough for reflection and routing of a second service."""

    async def ListAdapters(self, request: Any, context: Any) -> Any:
        return coordinator_pb2.ListAdaptersResponse()
