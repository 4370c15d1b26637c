"""A gRPC proxy in front of a real adapter that breaks one rule of the contract on purpose.

The conformance suite must fail an adapter that breaks the contract, not only pass ours. Each
`Defect` reproduces one way an adapter can get it wrong (several are what meshery's adapters do:
synchronous apply, events without order); with no defect the proxy is transparent, which the
tests also check, so a failing row is the defect's doing and not the proxy's.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc

TERMINAL = (
    pb.OPERATION_STATE_SUCCEEDED,
    pb.OPERATION_STATE_FAILED,
    pb.OPERATION_STATE_CANCELLED,
    pb.OPERATION_STATE_INTERRUPTED,
)


class Defect(enum.Enum):
    """One contract violation."""

    NONE = "none"
    CONTRACT_V2 = "contract-v2"
    BLANK_DESCRIPTION = "blank-description"
    DEFAULT_NOT_LISTED = "default-not-listed"
    UNKNOWN_IS_INVALID = "unknown-is-invalid"
    VAGUE_NAMESPACE_ERROR = "vague-namespace-error"
    SYNCHRONOUS_APPLY = "synchronous-apply"
    NEW_RUN_ON_RESEND = "new-run-on-resend"
    SHUFFLED_EVENTS = "shuffled-events"
    REPLAY_IGNORES_AFTER = "replay-ignores-after"
    DELETE_LEAVES_OBJECTS = "delete-leaves-objects"
    NEVER_TERMINAL = "never-terminal"
    NO_END_TIME = "no-end-time"


class DefectiveProxy(pb_grpc.MeshAdapterServiceServicer):  # type: ignore[misc, unused-ignore]
    """Forwards every RPC to ``upstream``, breaking the rule ``defect`` names."""

    def __init__(self, upstream: Any, defect: Defect, *, catalogue: tuple[str, ...] = ()) -> None:
        self.upstream = upstream
        self.defect = defect
        self.catalogue = catalogue
        """When set, ListOperations advertises only these ids (a shorter suite run)."""
        self._seen: set[str] = set()

    async def _forward(self, call: Any, request: Any, context: Any) -> Any:
        try:
            return await call(request, timeout=30)
        except grpc.aio.AioRpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if self.defect is Defect.UNKNOWN_IS_INVALID and code == grpc.StatusCode.NOT_FOUND:
                code = grpc.StatusCode.INVALID_ARGUMENT
            if (
                self.defect is Defect.VAGUE_NAMESPACE_ERROR
                and code == grpc.StatusCode.INVALID_ARGUMENT
            ):
                details = "the request is invalid"
            await context.abort(code, details)

    async def GetInfo(self, request: pb.GetInfoRequest, context: Any) -> pb.GetInfoResponse:
        info: pb.GetInfoResponse = await self._forward(self.upstream.GetInfo, request, context)
        if self.defect is Defect.CONTRACT_V2:
            info.contract_version = "v2"
        return info

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        reply: pb.ListOperationsResponse = await self._forward(
            self.upstream.ListOperations, request, context
        )
        if self.catalogue:
            kept = [op for op in reply.operations if op.id in self.catalogue]
            reply = pb.ListOperationsResponse(operations=kept)
        if self.defect is Defect.BLANK_DESCRIPTION:
            reply.operations[-1].description = ""
        return reply

    async def ListMeshVersions(
        self, request: pb.ListMeshVersionsRequest, context: Any
    ) -> pb.ListMeshVersionsResponse:
        reply: pb.ListMeshVersionsResponse = await self._forward(
            self.upstream.ListMeshVersions, request, context
        )
        if self.defect is Defect.DEFAULT_NOT_LISTED:
            reply.default_version = "99.0.0"
        return reply

    async def ApplyOperation(
        self, request: pb.ApplyOperationRequest, context: Any
    ) -> pb.ApplyOperationResponse:
        forwarded = pb.ApplyOperationRequest()
        forwarded.CopyFrom(request)
        if self.defect is Defect.NEW_RUN_ON_RESEND and request.operation_id in self._seen:
            forwarded.operation_id = f"{request.operation_id}-again"
        if (
            self.defect is Defect.DELETE_LEAVES_OBJECTS
            and request.delete
            and request.operation != "install"
        ):
            forwarded.delete = False  # "deleted", yet every object stays
            forwarded.parameters.pop("purge-crds", None)  # a delete's own parameter
        self._seen.add(request.operation_id)
        reply: pb.ApplyOperationResponse = await self._forward(
            self.upstream.ApplyOperation, forwarded, context
        )
        if self.defect is Defect.SYNCHRONOUS_APPLY:
            while reply.operation.state not in TERMINAL:
                await asyncio.sleep(0.02)
                got = await self.upstream.GetOperation(
                    pb.GetOperationRequest(operation_id=reply.operation_id), timeout=30
                )
                reply.operation.CopyFrom(got.operation)
        return reply

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        reply: pb.GetOperationResponse = await self._forward(
            self.upstream.GetOperation, request, context
        )
        if self.defect is Defect.NEVER_TERMINAL:
            reply.operation.state = pb.OPERATION_STATE_RUNNING
        if self.defect is Defect.NO_END_TIME:
            reply.operation.ClearField("end_time")
        return reply

    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Any
    ) -> pb.CancelOperationResponse:
        reply: pb.CancelOperationResponse = await self._forward(
            self.upstream.CancelOperation, request, context
        )
        return reply

    async def GetMeshStatus(
        self, request: pb.GetMeshStatusRequest, context: Any
    ) -> pb.GetMeshStatusResponse:
        reply: pb.GetMeshStatusResponse = await self._forward(
            self.upstream.GetMeshStatus, request, context
        )
        return reply

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        if self.defect is Defect.REPLAY_IGNORES_AFTER:
            request = pb.StreamEventsRequest(operation_id=request.operation_id)
        call = self.upstream.StreamEvents(request)
        held: pb.StreamEventsResponse | None = None
        try:
            async for reply in call:
                if self.defect is not Defect.SHUFFLED_EVENTS:
                    yield reply
                elif held is None:
                    held = reply
                else:
                    yield reply
                    yield held
                    held = None
        finally:
            call.cancel()


SERVICE = "meshplane.adapter.v1.MeshAdapterService"


def service(proxy: DefectiveProxy) -> tuple[Any, DefectiveProxy, str]:
    """The (adder, servicer, name) triple `start_grpc_server` takes."""
    return (pb_grpc.add_MeshAdapterServiceServicer_to_server, proxy, SERVICE)
