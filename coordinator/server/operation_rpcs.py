"""The coordinator's operation RPCs: apply (admitted, routed, recorded), get, cancel."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any, NoReturn

import grpc
import grpc.aio
import structlog

from coordinator.server import messages
from coordinator.server.identity.subjects import forwarded_identity
from coordinator.server.operation_admission import AdmissionRefused
from coordinator.server.replicas import Replica
from coordinator.server.routing import RouteError, check_dry_run_capability, long_call_seconds
from coordinator.server.rpc_group import RpcGroup, abort, relay
from coordinator.store.records import OperationRecord
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as pb
from serving.input_quoting import quoted

__all__ = ["OperationRpcs"]

_log = structlog.get_logger(__name__)


class OperationRpcs(RpcGroup):
    """ApplyOperation, GetOperation, CancelOperation."""

    async def ApplyOperation(
        self, request: pb.ApplyOperationRequest, context: Any
    ) -> pb.ApplyOperationResponse:
        """Assign the id, admit (the coordinator's own refusals and the id's claim come before
        forwarding), route (retrying on another replica), record, answer."""
        mesh = await self._known_mesh(context, request.mesh)
        outbound = adapter_pb.ApplyOperationRequest()
        outbound.CopyFrom(request.request)
        if outbound.dry_run:
            return await self._dry_run(context, mesh, outbound)
        if not outbound.operation_id:
            outbound.operation_id = str(uuid.uuid4())  # before the first attempt: retries are safe
        admission_of = self._parts.admission
        try:
            admission = await admission_of.admit(mesh, outbound)
        except AdmissionRefused as exc:
            await abort(context, exc.code, exc.message)

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.ApplyOperation(
                outbound, timeout=seconds, metadata=forwarded_identity()
            )

        try:
            answer, replica = await self._parts.router.call(
                mesh,
                invoke,
                caller_remaining=context.time_remaining(),
                retry=True,
                method="ApplyOperation",
            )
        except (RouteError, grpc.aio.AioRpcError) as exc:
            created = await admission_of.failed(admission, exc)
            if created is None:
                await _abort_routing(context, mesh, exc)
            return pb.ApplyOperationResponse(
                operation_id=created.operation_id, operation=messages.record_to_pb(created)
            )
        stored = await admission_of.answered(admission, answer.operation, replica.address)
        _log.info(
            "coordinator.operation_routed",
            operation_id=outbound.operation_id,
            mesh=mesh,
            operation=outbound.operation,
            replica=replica.address,
            created=answer.created,
        )
        return pb.ApplyOperationResponse(
            operation_id=answer.operation_id or outbound.operation_id,
            operation=messages.record_to_pb(stored),
        )

    async def _dry_run(
        self, context: Any, mesh: str, outbound: adapter_pb.ApplyOperationRequest
    ) -> pb.ApplyOperationResponse:
        """Route a dry run and relay its answer; nothing is claimed or recorded (the adapter
        records nothing either). It does the operation's reads and dry-run writes before
        answering, so it has the caller's deadline (at most `LONG_CALL_SECONDS`), not the
        per-call timeout; it changes nothing, so it is retried like a read."""
        try:
            await self._parts.admission.admit(mesh, outbound)
        except AdmissionRefused as exc:
            await abort(context, exc.code, exc.message)
        seconds = long_call_seconds(context.time_remaining())

        async def invoke(replica: Replica, channel: Any, _: float) -> Any:
            check_dry_run_capability(replica)
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.ApplyOperation(
                outbound, timeout=seconds, metadata=forwarded_identity()
            )

        answer = await self._route(context, mesh, invoke, retry=True, method="ApplyOperation")
        _log.info(
            "coordinator.dry_run_routed",
            mesh=mesh,
            operation=outbound.operation,
            state=adapter_pb.OperationState.Name(answer.operation.state),
        )
        return pb.ApplyOperationResponse(
            operation=pb.OperationRecord(mesh=mesh, operation=answer.operation),
            dry_run_result=answer.dry_run_result,
        )

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        """The stored record, refreshed from the replica that accepted it when it is there."""
        record = await self._stored(context, request.operation_id)
        replica = self._parts.registry.get(record.adapter)
        if replica is None or not replica.serving:
            return pb.GetOperationResponse(operation=messages.record_to_pb(record))

        asked = adapter_pb.GetOperationRequest(operation_id=record.operation_id)
        try:
            answer = await self._ask_replica(context, replica, "GetOperation", asked)
        except grpc.aio.AioRpcError as exc:
            _log.info(
                "coordinator.refresh_failed",
                operation_id=record.operation_id,
                replica=replica.address,
                error=exc.code().name,
            )
            return pb.GetOperationResponse(operation=messages.record_to_pb(record))
        refreshed = await self._save_refreshed(record, answer.operation)
        return pb.GetOperationResponse(operation=messages.record_to_pb(refreshed))

    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Any
    ) -> pb.CancelOperationResponse:
        """Forwarded to the replica running the operation (not retried elsewhere: it is the
        only one that knows it)."""
        record = await self._stored(context, request.operation_id)
        replica = self._parts.registry.get(record.adapter)
        if replica is None:
            await abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"the {record.mesh} adapter replica {record.adapter} that runs operation "
                f"{record.operation_id} is no longer registered",
            )

        asked = adapter_pb.CancelOperationRequest(operation_id=record.operation_id)
        try:
            answer = await self._ask_replica(context, replica, "CancelOperation", asked)
        except grpc.aio.AioRpcError as exc:
            await relay(context, record.mesh, replica.address, exc)
        refreshed = await self._save_refreshed(record, answer.operation)
        return pb.CancelOperationResponse(operation=messages.record_to_pb(refreshed))

    async def _ask_replica(self, context: Any, replica: Replica, rpc: str, request: Any) -> Any:
        """The answer of ``replica``'s adapter RPC ``rpc``, within the caller's deadline (the
        one replica that knows the operation: not retried elsewhere)."""

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            method = getattr(adapter_grpc.MeshAdapterServiceStub(channel), rpc)
            return await method(request, timeout=seconds, metadata=forwarded_identity())

        router = self._parts.router
        return await router.call_replica(
            replica, invoke, seconds=router.timeout(context.time_remaining())
        )

    async def _stored(self, context: Any, operation_id: str) -> OperationRecord:
        if not operation_id:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "operation_id is required")
        record = await self._parts.store.get_operation(operation_id)
        if record is None:
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no operation {quoted(operation_id)} is recorded",
            )
        return record

    async def _save_refreshed(
        self, previous: OperationRecord, operation: adapter_pb.Operation
    ) -> OperationRecord:
        fresh = messages.record_from_operation(
            operation, mesh=previous.mesh, adapter_address=previous.adapter
        )
        return await self._parts.store.save_operation(replace(fresh, request=previous.request))


async def _abort_routing(
    context: Any, mesh: str, error: RouteError | grpc.aio.AioRpcError
) -> NoReturn:
    """End the call with a routing refusal or the adapter's own error."""
    if isinstance(error, RouteError):
        await abort(context, error.code, error.message)
    await abort(context, error.code(), f"{mesh} adapter: {error.details() or ''}")
