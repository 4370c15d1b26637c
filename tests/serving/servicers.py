"""Small real servicers for exercising the server bootstrap (not the product's servicers).

Methods a test does not use answer UNIMPLEMENTED, as the generated base class would, but are
spelled out so the classes are concrete for the type checker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from meshplane.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from meshplane.coordinator.v1 import coordinator_pb2, coordinator_pb2_grpc

ADAPTER_SERVICE = "meshplane.adapter.v1.MeshAdapterService"
COORDINATOR_SERVICE = "meshplane.coordinator.v1.CoordinatorService"


async def _unimplemented(context: Any) -> NoReturn:
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of this test servicer")
    raise AssertionError("abort returned")


class EchoAdapter(adapter_pb2_grpc.MeshAdapterServiceServicer):
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

    async def ListOperations(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def ListMeshVersions(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def GetOperation(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def CancelOperation(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def StreamEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await _unimplemented(context)
        yield adapter_pb2.StreamEventsResponse()

    async def GetMeshStatus(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)


class EchoCoordinator(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Only ListAdapters answers, enough to prove a second service is routed and reflected."""

    async def ListAdapters(self, request: Any, context: Any) -> Any:
        return coordinator_pb2.ListAdaptersResponse()

    async def RegisterAdapter(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def DeregisterAdapter(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def ListOperations(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def ListMeshVersions(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def ApplyOperation(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def GetOperation(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def CancelOperation(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def ListOperationHistory(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)

    async def WatchEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await _unimplemented(context)
        yield coordinator_pb2.WatchEventsResponse()

    async def GetMeshStatus(self, request: Any, context: Any) -> Any:
        await _unimplemented(context)
