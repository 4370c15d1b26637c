"""``meshplane.coordinator.v1.CoordinatorService``: the coordinator's front door.

Requests are checked and converted here; routing, the registry and the store do the work. Errors
carry what the caller needs to act: which mesh is unknown and which ones exist, which replicas
are unhealthy and why, which address could not be reached.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import replace
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio
import structlog

from coordinator.perf.service import PerformanceRpcs
from coordinator.server import messages
from coordinator.server.event_hub import FollowerStatus
from coordinator.server.identity.audit_messages import audit_filter, audit_record_to_pb
from coordinator.server.identity.subjects import forwarded_identity
from coordinator.server.operation_admission import AdmissionRefused, OperationAdmission
from coordinator.server.registry import Registry
from coordinator.server.replicas import RegistrationError, Replica, Source
from coordinator.server.routing import (
    RouteError,
    Router,
    check_dry_run_capability,
    long_call_seconds,
)
from coordinator.store.base import Store
from coordinator.store.records import OperationRecord, StoredEvent
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as pb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as pb_grpc
from meshplane.perf.v1 import perf_pb2 as perf_pb
from serving.build_info import package_version
from serving.input_quoting import quoted

__all__ = ["SERVICE_NAME", "CoordinatorServicer", "EventSource"]

_log = structlog.get_logger(__name__)

SERVICE_NAME = "meshplane.coordinator.v1.CoordinatorService"
DEFAULT_HISTORY_PAGE = 50
MAX_HISTORY_PAGE = 500


class EventSource(Protocol):
    """What WatchEvents needs from the event hub."""

    def watch(
        self,
        *,
        mesh: str | None,
        operation_id: str | None,
        min_severity: str | None,
        after_cursor: int,
    ) -> AsyncGenerator[StoredEvent, None]:
        """Stored events after ``after_cursor``, then live ones, in cursor order."""
        ...


async def _abort(context: Any, code: Any, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


async def _relay(context: Any, mesh: str, replica: str, error: Any) -> NoReturn:
    """An adapter's error, with where it came from when the adapter itself did not answer."""
    details = error.details() or ""
    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        details = f"{mesh} adapter at {replica}: {details}"
    await _abort(context, error.code(), details)


class CoordinatorServicer(pb_grpc.CoordinatorServiceServicer):
    """Every RPC of the coordinator service (a contract test keeps the list complete)."""

    def __init__(
        self,
        *,
        registry: Registry,
        router: Router,
        store: Store,
        events: EventSource | None,
        perf: PerformanceRpcs | None = None,
        feed_status: Callable[[str], FollowerStatus | None] | None = None,
        admission: OperationAdmission | None = None,
    ) -> None:
        self._registry = registry
        self._router = router
        self._store = store
        self._admission = admission or OperationAdmission(store, registry)
        self._events = events
        self._feed_status = feed_status
        self._perf = perf or PerformanceRpcs(store)

    # -- adapters ----------------------------------------------------------------------------

    async def _feeds(self, replicas: list[Replica]) -> dict[str, messages.FeedView]:
        """Per replica: the stored position of its event stream and the follower's problems."""
        views: dict[str, messages.FeedView] = {}
        for replica in replicas:
            sequence = 0
            if replica.event_stream_id:
                source = f"{replica.mesh}/{replica.event_stream_id}"
                sequence = await self._store.last_sequence(source)
            status = self._feed_status(replica.address) if self._feed_status else None
            views[replica.address] = messages.FeedView(
                last_sequence=sequence,
                error=status.feed_error if status else "",
                skipped_events=status.skipped_events if status else 0,
            )
        return views

    async def ListAdapters(
        self, request: pb.ListAdaptersRequest, context: Any
    ) -> pb.ListAdaptersResponse:
        """Every replica by mesh, with health, version, last error and event progress."""
        replicas = self._registry.replicas()
        feeds = await self._feeds(replicas)
        return pb.ListAdaptersResponse(
            adapters=messages.adapters_to_pb(replicas, feeds=feeds),
            coordinator_version=package_version(),
        )

    async def _adapter(self, mesh: str) -> pb.Adapter:
        replicas = self._registry.replicas(mesh)
        feeds = await self._feeds(replicas)
        adapters = messages.adapters_to_pb(replicas, feeds=feeds)
        return adapters[0] if adapters else pb.Adapter(mesh=mesh)

    async def RegisterAdapter(
        self, request: pb.RegisterAdapterRequest, context: Any
    ) -> pb.RegisterAdapterResponse:
        """Contact the replica, check its mesh, add it and start following it."""
        address = request.address.strip()
        if not address:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "address is required")
        try:
            replica = await self._registry.register(
                address,
                mesh=request.mesh,
                seconds=self._router.timeout(context.time_remaining()),
            )
        except RegistrationError as exc:
            await _abort(context, exc.code, exc.message)
        return pb.RegisterAdapterResponse(adapter=await self._adapter(replica.mesh))

    async def DeregisterAdapter(
        self, request: pb.DeregisterAdapterRequest, context: Any
    ) -> pb.DeregisterAdapterResponse:
        """Remove a dynamically registered replica (static and discovered ones stay)."""
        address = request.address.strip()
        replica = self._registry.get(address)
        if replica is None:
            known = ", ".join(r.address for r in self._registry.replicas()) or "none"
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no adapter replica registered at {quoted(address)}; known: {known}",
            )
        if replica.source is not Source.DYNAMIC:
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{address} was added by {replica.source.value} configuration, not "
                "RegisterAdapter; remove it there",
            )
        await self._registry.remove(address)
        return pb.DeregisterAdapterResponse()

    # -- catalogue and versions --------------------------------------------------------------

    async def _known_mesh(self, context: Any, mesh: str) -> str:
        mesh = mesh.strip().lower()
        if not mesh:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "mesh is required")
        if mesh not in self._registry.meshes():
            known = ", ".join(self._registry.meshes()) or "none registered"
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"unknown mesh {quoted(mesh)}; known meshes: {known}",
            )
        return mesh

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        """Catalogues kept from each adapter's ListOperations (refreshed on reconnect)."""
        meshes = (
            [await self._known_mesh(context, request.mesh)]
            if request.mesh
            else self._registry.meshes()
        )
        return pb.ListOperationsResponse(
            catalogues=[
                pb.MeshCatalogue(mesh=mesh, operations=list(self._registry.catalogue(mesh)))
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

    async def _route(
        self, context: Any, mesh: str, invoke: Any, *, retry: bool, method: str
    ) -> Any:
        try:
            answer, _ = await self._router.call(
                mesh,
                invoke,
                caller_remaining=context.time_remaining(),
                retry=retry,
                method=method,
            )
        except RouteError as exc:
            await _abort(context, exc.code, exc.message)
        except grpc.aio.AioRpcError as exc:
            await _abort(context, exc.code(), f"{mesh} adapter: {exc.details() or ''}")
        return answer

    # -- operations --------------------------------------------------------------------------

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
        try:
            admission = await self._admission.admit(mesh, outbound)
        except AdmissionRefused as exc:
            await _abort(context, exc.code, exc.message)

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.ApplyOperation(
                outbound, timeout=seconds, metadata=forwarded_identity()
            )

        try:
            answer, replica = await self._router.call(
                mesh,
                invoke,
                caller_remaining=context.time_remaining(),
                retry=True,
                method="ApplyOperation",
            )
        except (RouteError, grpc.aio.AioRpcError) as exc:
            created = await self._admission.failed(admission, exc)
            if created is None:
                if isinstance(exc, RouteError):
                    await _abort(context, exc.code, exc.message)
                await _abort(context, exc.code(), f"{mesh} adapter: {exc.details() or ''}")
            return pb.ApplyOperationResponse(
                operation_id=created.operation_id, operation=messages.record_to_pb(created)
            )
        stored = await self._admission.answered(admission, answer.operation, replica.address)
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
            await self._admission.admit(mesh, outbound)
        except AdmissionRefused as exc:
            await _abort(context, exc.code, exc.message)
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

    async def _stored(self, context: Any, operation_id: str) -> OperationRecord:
        if not operation_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "operation_id is required")
        record = await self._store.get_operation(operation_id)
        if record is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no operation {quoted(operation_id)} is recorded",
            )
        return record

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        """The stored record, refreshed from the replica that accepted it when it is there."""
        record = await self._stored(context, request.operation_id)
        replica = self._registry.get(record.adapter)
        if replica is None or not replica.serving:
            return pb.GetOperationResponse(operation=messages.record_to_pb(record))

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.GetOperation(
                adapter_pb.GetOperationRequest(operation_id=record.operation_id),
                timeout=seconds,
                metadata=forwarded_identity(),
            )

        try:
            answer = await self._router.call_replica(
                replica, invoke, seconds=self._router.timeout(context.time_remaining())
            )
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

    async def _save_refreshed(
        self, previous: OperationRecord, operation: adapter_pb.Operation
    ) -> OperationRecord:
        fresh = messages.record_from_operation(
            operation, mesh=previous.mesh, adapter_address=previous.adapter
        )
        return await self._store.save_operation(replace(fresh, request=previous.request))

    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Any
    ) -> pb.CancelOperationResponse:
        """Forwarded to the replica running the operation (not retried elsewhere: it is the
        only one that knows it)."""
        record = await self._stored(context, request.operation_id)
        replica = self._registry.get(record.adapter)
        if replica is None:
            await _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"the {record.mesh} adapter replica {record.adapter} that runs operation "
                f"{record.operation_id} is no longer registered",
            )

        async def invoke(replica: Replica, channel: Any, seconds: float) -> Any:
            stub = adapter_grpc.MeshAdapterServiceStub(channel)
            return await stub.CancelOperation(
                adapter_pb.CancelOperationRequest(operation_id=record.operation_id),
                timeout=seconds,
                metadata=forwarded_identity(),
            )

        try:
            answer = await self._router.call_replica(
                replica, invoke, seconds=self._router.timeout(context.time_remaining())
            )
        except grpc.aio.AioRpcError as exc:
            await _relay(context, record.mesh, replica.address, exc)
        refreshed = await self._save_refreshed(record, answer.operation)
        return pb.CancelOperationResponse(operation=messages.record_to_pb(refreshed))

    async def ListOperationHistory(
        self, request: pb.ListOperationHistoryRequest, context: Any
    ) -> pb.ListOperationHistoryResponse:
        """One page of the store's history, newest first."""
        page_size = min(request.page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        try:
            filter = messages.history_filter(request)
            records, token = await self._store.list_operations(
                filter, page_size=page_size, page_token=request.page_token
            )
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ListOperationHistoryResponse(
            operations=[messages.record_to_pb(r) for r in records], next_page_token=token
        )

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Any
    ) -> pb.ListAuditRecordsResponse:
        """One page of the audit trail, newest first."""
        page_size = min(request.page_size or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
        try:
            records, token = await self._store.list_audit_records(
                audit_filter(request), page_size=page_size, page_token=request.page_token
            )
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ListAuditRecordsResponse(
            records=[audit_record_to_pb(r) for r in records], next_page_token=token
        )

    # -- events ------------------------------------------------------------------------------

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Any
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        """Stored events after the cursor, then live ones, from the event hub."""
        if self._events is None:
            await _abort(
                context, grpc.StatusCode.UNIMPLEMENTED, "this coordinator runs no event hub"
            )
        pruned = await self._store.pruned_through_cursor()
        newest = max(await self._store.latest_cursor(), pruned)
        if request.after_cursor > newest:
            await _abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"cursor {request.after_cursor} is beyond the newest event {newest}; the store "
                "was reset? resume with 0",
            )
        if 0 < request.after_cursor < pruned:
            await _abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"events after cursor {request.after_cursor} up to {pruned} were deleted by "
                f"retention; resume with after_cursor={pruned} (the oldest events kept "
                "follow), or 0 for every event kept",
            )
        addresses: dict[str, str] = {}
        stream = self._events.watch(
            mesh=request.mesh.strip().lower() or None,
            operation_id=request.operation_id or None,
            min_severity=messages.severity_name(request.min_severity),
            after_cursor=request.after_cursor,
        )
        async with contextlib.aclosing(stream):  # unregister the watcher when the client leaves
            async for stored in stream:
                yield messages.event_from_payload(
                    stored, adapter_address=self._address_of(stored, addresses)
                )

    # -- performance tests (the work is in coordinator.perf.service) --------------------------

    async def RunPerformanceTest(
        self, request: perf_pb.RunPerformanceTestRequest, context: Any
    ) -> AsyncIterator[perf_pb.RunPerformanceTestResponse]:
        """Progress about once a second, then the stored result."""
        async for response in self._perf.RunPerformanceTest(request, context):
            yield response

    async def ListPerformanceResults(
        self, request: perf_pb.ListPerformanceResultsRequest, context: Any
    ) -> perf_pb.ListPerformanceResultsResponse:
        """Stored results, newest first, filtered and paged."""
        return await self._perf.ListPerformanceResults(request, context)

    async def GetPerformanceResult(
        self, request: perf_pb.GetPerformanceResultRequest, context: Any
    ) -> perf_pb.GetPerformanceResultResponse:
        """One stored result."""
        return await self._perf.GetPerformanceResult(request, context)

    async def ComparePerformanceResults(
        self, request: perf_pb.ComparePerformanceResultsRequest, context: Any
    ) -> perf_pb.ComparePerformanceResultsResponse:
        """Stored results side by side, the first as the baseline."""
        return await self._perf.ComparePerformanceResults(request, context)

    def _address_of(self, stored: StoredEvent, cache: dict[str, str]) -> str:
        """The replica whose event stream a stored event came from (its ``source``)."""
        source = stored.event.source
        if source not in cache:
            found = next(
                (
                    r.address
                    for r in self._registry.replicas(stored.event.mesh or None)
                    if f"{r.mesh}/{r.event_stream_id}" == source
                ),
                "",
            )
            if not found:
                return ""  # not known (yet): do not remember the miss
            cache[source] = found
        return cache[source]
