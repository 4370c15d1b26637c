"""The Meshery door: `meshes.MeshService` served by every adapter, on top of the native door.

Every Meshery RPC is translated into the native RPC it stands for and handed to the adapter's
`MeshAdapterServicer` with the caller's own context (ApplyOperation → ApplyOperation,
SupportedOperations → ListOperations, MeshVersions → ListMeshVersions, ComponentInfo → GetInfo,
StreamEvents → StreamEvents). So a Meshery server is a client like any other: its requests are
admitted, bounded, judged by policy and identity, recorded and run exactly as native ones, by the
same code, with no list of rules kept twice. Only the wording of a refusal is translated (the
native message names `operation`, Meshery sent `opName`).

Refusals are gRPC statuses, as meshery-adapter-library's ApplyOperation returns them (the
Meshery server reads the call's error and ignores the response then); ApplyRuleResponse.error
is only filled for an accepted call whose operation_id names an operation that already failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc
import structlog

from adapters.kit.grpc import meshery_messages as translate
from adapters.kit.grpc.servicer import MeshAdapterServicer
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.runner import OperationRunner
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.meshery import meshops_pb2 as meshes
from meshplane.meshery import meshops_pb2_grpc as meshes_grpc
from serving.grpc_server import GrpcServer

__all__ = ["MESHERY_SERVICE_NAME", "MesheryServicer", "serve_meshery_on"]

_log = structlog.get_logger(__name__)

MESHERY_SERVICE_NAME = "meshes.MeshService"
PROCESS_OAM_RETIRED = (
    "ProcessOAM is retired: meshplane adapters do not process OAM components. Send "
    "ApplyOperation with an opName from SupportedOperations, or opName=custom with your YAML "
    "in custom_body"
)
_RESUMABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED})
_Reply = TypeVar("_Reply")


class _Refusal(Exception):
    """The native door ended the call; the Meshery door answers it in Meshery's words."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _NativeCall:
    """The caller's context as the native door sees it, except that ending the call is reported
    back to the Meshery door instead of reaching the caller (which then words it for Meshery).

    Metadata, peer, authentication context, deadline and cancellation are the caller's own, so
    identity and policy decisions are made on the real call.
    """

    def __init__(self, context: Any) -> None:
        self._context = context
        self.code: Any = None
        self.details = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> NoReturn:
        raise _Refusal(code, details)

    def set_code(self, code: Any) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details


async def _answer(context: Any, refusal: _Refusal) -> NoReturn:
    await context.abort(refusal.code, translate.meshery_wording(refusal.details))
    raise AssertionError("context.abort returned")


async def _unary(
    context: Any, call: Callable[[_NativeCall], Awaitable[_Reply]], *, mesh: str, method: str
) -> _Reply:
    """One native unary call on the caller's context; its refusal answered in Meshery's words."""
    try:
        return await call(_NativeCall(context))
    except _Refusal as refusal:
        _log.info("meshery.refused", mesh=mesh, method=method, code=str(refusal.code))
        await _answer(context, refusal)


class MesheryServicer(meshes_grpc.MeshServiceServicer):
    """Implements `meshes.MeshService` for one mesh by translating to the native servicer."""

    def __init__(
        self, *, native: MeshAdapterServicer, runner: OperationRunner, events: EventLog
    ) -> None:
        self._native = native
        self._runner = runner
        self._events = events
        self._mesh = runner.declaration.mesh
        self._name = translate.mesh_name(self._mesh)

    async def MeshName(
        self, request: meshes.MeshNameRequest, context: Any
    ) -> meshes.MeshNameResponse:
        """The mesh in Meshery's spelling (also Meshery's health check)."""
        return meshes.MeshNameResponse(name=self._name)

    async def ApplyOperation(
        self, request: meshes.ApplyRuleRequest, context: Any
    ) -> meshes.ApplyRuleResponse:
        """The native ApplyOperation, on the translated request."""
        native = translate.apply_request_to_native(request)
        response = await _unary(
            context,
            lambda call: self._native.ApplyOperation(native, call),
            mesh=self._mesh,
            method="ApplyOperation",
        )
        return translate.apply_response_from_native(response)

    async def SupportedOperations(
        self, request: meshes.SupportedOperationsRequest, context: Any
    ) -> meshes.SupportedOperationsResponse:
        """The native catalogue (ListOperations)."""
        catalogue = await _unary(
            context,
            lambda call: self._native.ListOperations(pb.ListOperationsRequest(), call),
            mesh=self._mesh,
            method="SupportedOperations",
        )
        return translate.supported_operations_from_native(catalogue)

    async def MeshVersions(
        self, request: meshes.MeshVersionsRequest, context: Any
    ) -> meshes.MeshVersionsResponse:
        """Versions from the chart repository index (ListMeshVersions)."""
        versions = await _unary(
            context,
            lambda call: self._native.ListMeshVersions(pb.ListMeshVersionsRequest(), call),
            mesh=self._mesh,
            method="MeshVersions",
        )
        return translate.versions_from_native(versions)

    async def ComponentInfo(
        self, request: meshes.ComponentInfoRequest, context: Any
    ) -> meshes.ComponentInfoResponse:
        """The adapter build (GetInfo)."""
        info = await _unary(
            context,
            lambda call: self._native.GetInfo(pb.GetInfoRequest(), call),
            mesh=self._mesh,
            method="ComponentInfo",
        )
        return translate.component_info_from_native(info)

    async def ProcessOAM(
        self, request: meshes.ProcessOAMRequest, context: Any
    ) -> meshes.ProcessOAMResponse:
        """Retired: UNIMPLEMENTED, saying what to use instead."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, PROCESS_OAM_RETIRED)
        raise AssertionError("context.abort returned")

    async def StreamEvents(
        self, request: meshes.EventsRequest, context: Any
    ) -> AsyncIterator[meshes.EventsResponse]:
        """Events already recorded for operations still running, then every new event.

        Response headers are sent at once: a client that waits for them (`wait_for_connection`)
        and then starts an operation receives all of that operation's events.

        Meshery cannot resume by sequence, so the door does it for it: a stream that falls too
        far behind continues from where it was (from the oldest retained event when retention
        dropped some, after a WARN event saying how many were lost) instead of ending.
        """
        running = self._runner.running
        now = self._events.last_sequence
        after = next(
            (e.sequence - 1 for e in self._events.retained() if e.operation_id in running), now
        )
        # Headers now: whatever happens after the caller sees them is delivered (the native
        # subscription replays from `after`), so a client can wait for them, then act.
        await context.send_initial_metadata(())
        while True:
            call = _NativeCall(context)
            native = cast(
                AsyncGenerator[pb.StreamEventsResponse, None],
                self._native.StreamEvents(pb.StreamEventsRequest(after_sequence=after), call),
            )
            try:
                # Closed however this stream ends, so the native subscription goes with it.
                async with contextlib.aclosing(native):
                    async for reply in native:
                        event = reply.event
                        after = event.sequence
                        if event.sequence <= now and event.operation_id not in running:
                            continue
                        yield translate.event_from_native(event)
            except _Refusal as refusal:
                await _answer(context, refusal)
            if call.code in _RESUMABLE:
                _log.info("meshery.events_resumed", mesh=self._mesh, after=after)
                continue
            if call.code == grpc.StatusCode.OUT_OF_RANGE:
                lost = self._events.oldest_sequence - after - 1
                yield self._gap_event(lost)
                after = max(self._events.oldest_sequence - 1, 0)
                continue
            if call.code is not None:
                context.set_code(call.code)
                context.set_details(
                    "the adapter is shutting down; open StreamEvents again once it is back"
                    if call.code == grpc.StatusCode.UNAVAILABLE
                    else translate.meshery_wording(call.details)
                )
            return

    def _gap_event(self, lost: int) -> meshes.EventsResponse:
        return meshes.EventsResponse(
            event_type=meshes.WARN,
            summary=f"{max(lost, 1)} events were not delivered to this stream",
            details=f"this stream fell behind by more than the adapter retains "
            f"({self._events.retention} events)",
            probable_cause="the client read events more slowly than the adapter produced them",
            suggested_remediation="check operation outcomes in the adapter's history; read the "
            "stream without pausing",
            error_code="EVENTS_DROPPED",
            component=translate.COMPONENT_TYPE,
            component_name=self._name,
        )


def serve_meshery_on(server: GrpcServer, servicer: MesheryServicer) -> None:
    """Register `meshes.MeshService` (and its health and reflection names) on a `GrpcServer`."""
    server.add_service(
        meshes_grpc.add_MeshServiceServicer_to_server, servicer, MESHERY_SERVICE_NAME
    )
