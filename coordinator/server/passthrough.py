"""``meshplane.adapter.v1.MeshAdapterService`` on the coordinator, passed through to an adapter.

A client that speaks the adapter contract can point at the coordinator and add the metadata
``x-meshplane-mesh: istio``; the call goes to a healthy replica of that mesh. Messages travel as
raw bytes (no decode and re-encode), the caller's deadline and metadata go along, and the
adapter's status comes back unchanged. Read-only methods, and ApplyOperation carrying an
operation id, are retried on another replica; GetOperation and CancelOperation go to the replica
that accepted the operation when the store knows it (requests are parsed only to decide this;
the bytes sent are the caller's). ApplyOperation is admitted as through the coordinator service
(`coordinator.server.operation_admission`: the coordinator's refusals and the operation_id's reuse
rule before forwarding, the answer recorded after).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
import structlog
from google.protobuf import descriptor_pool

from coordinator.server.identity.subjects import IDENTITY_HEADERS, forwarded_identity
from coordinator.server.messages import operation_from_record
from coordinator.server.operation_admission import Admission, AdmissionRefused, OperationAdmission
from coordinator.server.registry import Registry
from coordinator.server.replicas import RegistryChange, Replica
from coordinator.server.routing import (
    RouteError,
    Router,
    check_dry_run_capability,
    long_call_seconds,
)
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb

__all__ = ["MESH_METADATA_KEY", "SERVICE_NAME", "Passthrough", "add_passthrough_to_server"]

_log = structlog.get_logger(__name__)

MESH_METADATA_KEY = "x-meshplane-mesh"
SERVICE_NAME = "meshplane.adapter.v1.MeshAdapterService"

_READ_ONLY = frozenset(
    {
        "GetInfo",
        "ListOperations",
        "ListMeshVersions",
        "GetOperation",
        "GetMeshStatus",
        "RenderOperation",
    }
)
_BY_OPERATION_ID: dict[str, Callable[[bytes], str]] = {
    "GetOperation": lambda raw: adapter_pb.GetOperationRequest.FromString(raw).operation_id,
    "CancelOperation": lambda raw: adapter_pb.CancelOperationRequest.FromString(raw).operation_id,
}
# Metadata the transport owns, the caller's credentials (never passed to an adapter) and the
# identity headers only the coordinator sets; everything else the caller sent is forwarded.
_NOT_FORWARDED = frozenset(
    {MESH_METADATA_KEY, "user-agent", "content-type", "te", "host", "authorization"}
    | IDENTITY_HEADERS
)

_MISSING_MESH = (
    f"calls to {SERVICE_NAME} on the coordinator need the metadata key {MESH_METADATA_KEY!r} "
    f"naming the mesh (e.g. {MESH_METADATA_KEY}: istio)"
)

Locate = Callable[[str], Awaitable[str | None]]
"""Address of the replica that accepted an operation id, or None when unknown."""


class Passthrough:
    """Generic handlers for every method of the adapter service, unary and server-streaming."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        *,
        admission: OperationAdmission,
        locate: Locate | None = None,
    ) -> None:
        self._registry = registry
        self._router = router
        self._admission = admission
        self._locate = locate
        # address -> (its channel, method -> multicallable); rebuilt when the channel changes.
        self._callables: dict[str, tuple[Any, dict[str, Any]]] = {}
        registry.add_listener(self._forget)

    def _forget(self, change: RegistryChange) -> None:
        if change.kind == "removed":
            self._callables.pop(change.replica.address, None)

    def handler(self) -> Any:
        """A ``grpc.GenericRpcHandler`` for :data:`SERVICE_NAME` built from its descriptor."""
        service = descriptor_pool.Default().FindServiceByName(SERVICE_NAME)
        handlers: dict[str, Any] = {}
        for method in service.methods:
            if method.client_streaming:
                continue  # the contract has none; a new one would need its own forwarding
            if method.server_streaming:
                handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                    self._streaming(method.name)
                )
            else:
                handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                    self._unary(method.name)
                )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)

    def _multicallable(self, address: str, channel: Any, method: str, *, streaming: bool) -> Any:
        """The raw-bytes callable for ``method`` on a replica's channel (cached per channel)."""
        cached = self._callables.get(address)
        if cached is None or cached[0] is not channel:
            cached = (channel, {})
            self._callables[address] = cached
        call = cached[1].get(method)
        if call is None:
            path = f"/{SERVICE_NAME}/{method}"
            # Registered with the channel once: no per-call method path for the C core to intern.
            register = channel.unary_stream if streaming else channel.unary_unary
            call = register(path, _registered_method=True)
            cached[1][method] = call
        return call

    def _unary(self, method: str) -> Callable[[bytes, Any], Awaitable[bytes]]:
        pinnable = method in _BY_OPERATION_ID
        read_only = method in _READ_ONLY

        async def forward(request: bytes, context: Any) -> bytes:
            mesh, metadata = _mesh_and_metadata(context)
            if not mesh:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _MISSING_MESH)

            # A dry run or a rendering does an operation's work before answering: it has the
            # caller's deadline, not the router's per-call timeout.
            dry_run = _is_dry_run(method, request)
            long = dry_run or method == "RenderOperation"

            async def invoke(replica: Replica, channel: Any, seconds: float) -> bytes:
                if dry_run:
                    check_dry_run_capability(replica)
                call = self._multicallable(replica.address, channel, method, streaming=False)
                if long:
                    seconds = long_call_seconds(context.time_remaining())
                response: bytes = await call(request, timeout=seconds, metadata=metadata)
                return response

            admission = await self._admit(method, request, mesh, context)
            try:
                pinned = await self._pinned(method, request, mesh) if pinnable else None
                if pinned is not None:
                    budget = self._router.timeout(context.time_remaining())
                    return await self._router.call_replica(pinned, invoke, seconds=budget)
                response, replica = await self._router.call(
                    mesh,
                    invoke,
                    caller_remaining=context.time_remaining(),
                    retry=read_only or long or _carries_operation_id(method, request),
                    method=method,
                )
                if admission is not None:
                    await self._record(admission, response, replica)
                return response
            except (RouteError, grpc.aio.AioRpcError) as exc:
                created = (
                    None if admission is None else await self._admission.failed(admission, exc)
                )
                if created is not None:
                    return adapter_pb.ApplyOperationResponse(
                        operation_id=created.operation_id,
                        operation=operation_from_record(created),
                        created=True,
                    ).SerializeToString()
                if isinstance(exc, RouteError):
                    await context.abort(exc.code, exc.message)
                await _relay_error(context, exc)
            raise AssertionError("unreachable: abort raises")

        return forward

    def _streaming(self, method: str) -> Callable[[bytes, Any], AsyncIterator[bytes]]:
        async def forward(request: bytes, context: Any) -> AsyncIterator[bytes]:
            mesh, metadata = _mesh_and_metadata(context)
            if not mesh:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _MISSING_MESH)
            try:
                replica = self._router.pick(mesh)
            except RouteError as exc:
                await context.abort(exc.code, exc.message)
                return
            channel = self._registry.channel(replica.address)
            call = self._multicallable(replica.address, channel, method, streaming=True)(
                request, timeout=context.time_remaining(), metadata=metadata
            )
            try:
                async for response in call:
                    yield response
            except grpc.aio.AioRpcError as exc:
                await _relay_error(context, exc)
            finally:
                call.cancel()

        return forward

    async def _admit(
        self, method: str, request: bytes, mesh: str, context: Any
    ) -> Admission | None:
        """ApplyOperation only: the coordinator's own checks and the id's claim (None: other
        methods, or a request too malformed to parse, which the adapter rejects itself)."""
        if method != "ApplyOperation":
            return None
        try:
            parsed = adapter_pb.ApplyOperationRequest.FromString(request)
        except Exception:
            return None
        try:
            return await self._admission.admit(mesh, parsed)
        except AdmissionRefused as exc:
            await context.abort(exc.code, exc.message)
            raise AssertionError("unreachable: abort raises") from exc

    async def _record(self, admission: Admission, response: bytes, replica: Replica) -> None:
        """Record the adapter's answer to an admitted ApplyOperation (as the service does)."""
        try:
            answer = adapter_pb.ApplyOperationResponse.FromString(response)
        except Exception:
            _log.warning("passthrough.unreadable_answer", replica=replica.address)
            return
        if answer.operation.operation_id:
            await self._admission.answered(admission, answer.operation, replica.address)

    async def _pinned(self, method: str, request: bytes, mesh: str) -> Replica | None:
        """The serving replica that owns the operation a request names, if known."""
        parse = _BY_OPERATION_ID.get(method)
        if parse is None or self._locate is None:
            return None
        try:
            operation_id = parse(request)
        except Exception:
            return None  # let the adapter reject the malformed request
        address = await self._locate(operation_id) if operation_id else None
        replica = self._registry.get(address) if address else None
        if replica is None or not replica.serving or replica.mesh != mesh:
            return None
        return replica


def _is_dry_run(method: str, request: bytes) -> bool:
    """True for an ApplyOperation asking for a dry run."""
    if method != "ApplyOperation":
        return False
    try:
        return adapter_pb.ApplyOperationRequest.FromString(request).dry_run
    except Exception:
        return False


def _carries_operation_id(method: str, request: bytes) -> bool:
    """True for an ApplyOperation whose caller chose the operation id: sending it again returns
    the same operation, so it may be retried; without an id a retry could start a second run."""
    if method != "ApplyOperation":
        return False
    try:
        return bool(adapter_pb.ApplyOperationRequest.FromString(request).operation_id)
    except Exception:
        return False


def _mesh_and_metadata(context: Any) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The mesh named by the caller ("" when missing) and the metadata to forward: the caller's
    own (credentials and identity headers left out) plus the authenticated caller's identity."""
    mesh = ""
    forwarded: list[tuple[str, Any]] = []
    for key, value in context.invocation_metadata() or ():
        if key == MESH_METADATA_KEY:
            mesh = str(value).strip().lower()
        elif key not in _NOT_FORWARDED and not key.startswith((":", "grpc-")):
            forwarded.append((key, value))
    forwarded.extend(forwarded_identity())
    return mesh, tuple(forwarded)


async def _relay_error(context: Any, error: Any) -> None:
    """Answer with the adapter's own status, details and trailing metadata."""
    trailing = tuple(
        (key, value)
        for key, value in (error.trailing_metadata() or ())
        if not key.startswith((":", "grpc-"))
    )
    await context.abort(error.code(), error.details() or "", trailing_metadata=trailing)


def add_passthrough_to_server(passthrough: Passthrough, server: Any) -> None:
    """Adder in the shape of the generated ``add_*_to_server`` functions (for GrpcServer)."""
    server.add_generic_rpc_handlers((passthrough.handler(),))
