"""Admitting an ApplyOperation before it is forwarded, for the service and the pass-through alike.

Order, so that an error from the coordinator never hides an operation an adapter created:

1. Every refusal of the coordinator's own comes first: an unknown mesh, an answer that would be
   too large to read (the request fields the answer repeats, beyond
   `serving.message_limits.MAX_ECHOED_REQUEST_BYTES`), and an operation_id already naming another
   request (`serving.operation_reuse`, the rule the adapter applies too, across meshes here).
2. The id is claimed in the store (inserted if absent, atomically), so two requests racing with
   one id for different meshes cannot both be forwarded.
3. After forwarding: the answer is recorded. An adapter's refusal releases the claim. Any other
   failure (deadline, connection lost, an answer that could not be read) is reconciled: the
   replicas are asked for the operation, and if one has it, it is recorded and returned as
   accepted; if every replica says it does not exist, the claim is released; if none can be
   asked, the claim stays (the same request again is still accepted) and the error is returned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import structlog

from coordinator.server import messages
from coordinator.server.event_records import TERMINAL_STATES
from coordinator.server.registry import Registry
from coordinator.store.base import Store
from coordinator.store.records import OperationRecord
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from serving.message_limits import MAX_ECHOED_REQUEST_BYTES
from serving.operation_reuse import (
    RequestIdentity,
    custom_body_digest,
    identity_of,
    reuse_difference,
)

__all__ = ["Admission", "AdmissionRefused", "OperationAdmission"]

_log = structlog.get_logger(__name__)

DIGEST_KEY = "custom_body_sha256"
"""Where a record's request keeps the custom body's digest (never the body: it may hold secrets)."""

_REFUSALS = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
"""Statuses an adapter answers before recording anything: the request was not created."""

_RECONCILE_SECONDS = 2.0


class AdmissionRefused(Exception):
    """The coordinator refuses the request before forwarding it; ``code`` is the gRPC status."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Admission:
    """A request let through: what to record once the adapter answers."""

    mesh: str
    operation_id: str
    digest: str
    claimed: bool
    """True when this request inserted the claim (so a failure may release it)."""


def _attempt(record: OperationRecord) -> int:
    value = record.request.get("attempt", 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def _echoed(request: adapter_pb.ApplyOperationRequest) -> adapter_pb.Operation:
    """What of the request an answer's Operation repeats."""
    return adapter_pb.Operation(
        operation_id=request.operation_id,
        operation=request.operation,
        mesh_version=request.mesh_version,
        namespace=request.namespace,
        delete=request.delete,
        parameters=dict(request.parameters),
        username=request.username,
        clusters=[cluster.name for cluster in request.clusters],
    )


def identity_of_request(mesh: str, request: adapter_pb.ApplyOperationRequest) -> RequestIdentity:
    """The request as sent."""
    return identity_of(
        mesh,
        request,
        custom_body_sha256=custom_body_digest(request.custom_body),
        clusters=tuple(cluster.name for cluster in request.clusters),
    )


def identity_of_record(record: OperationRecord) -> RequestIdentity:
    """A stored record's request (resolved values; the digest only when it was recorded)."""
    request = record.request
    parameters = request.get("parameters")
    clusters = request.get("clusters")
    digest = request.get(DIGEST_KEY)
    return RequestIdentity(
        mesh=record.mesh,
        operation=record.operation,
        delete=bool(request.get("delete", False)),
        namespace=str(request.get("namespace", "")),
        mesh_version=str(request.get("mesh_version", "")),
        parameters={str(k): str(v) for k, v in parameters.items()}
        if isinstance(parameters, dict)
        else {},
        custom_body_sha256=digest if isinstance(digest, str) else None,
        clusters=tuple(str(c) for c in clusters) if isinstance(clusters, list) else (),
    )


class OperationAdmission:
    """Checks, claims and records ApplyOperation requests around forwarding them."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self._store = store
        self._registry = registry

    def _defaults(self, mesh: str, operation: str) -> dict[str, str]:
        for descriptor in self._registry.catalogue(mesh):
            if descriptor.id == operation:
                return {p.name: p.default_value for p in descriptor.parameters if p.default_value}
        return {}

    async def admit(self, mesh: str, request: adapter_pb.ApplyOperationRequest) -> Admission:
        """The coordinator's own checks, then the claim; `AdmissionRefused` before forwarding."""
        if mesh not in self._registry.meshes():
            known = ", ".join(self._registry.meshes()) or "none registered"
            raise AdmissionRefused(
                grpc.StatusCode.NOT_FOUND, f"unknown mesh {mesh!r}; known meshes: {known}"
            )
        echoed = _echoed(request).ByteSize()
        if echoed > MAX_ECHOED_REQUEST_BYTES:
            raise AdmissionRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"request: username, parameters, ids and cluster names take {echoed} bytes; at "
                f"most {MAX_ECHOED_REQUEST_BYTES} (the answer repeats them): shorten them",
            )
        digest = custom_body_digest(request.custom_body)
        admission = Admission(
            mesh=mesh, operation_id=request.operation_id, digest=digest, claimed=False
        )
        if not request.operation_id or request.dry_run:
            # The adapter assigns one, or (a dry run) records nothing: nothing can be reused.
            return admission
        existing = await self._store.claim_operation(self._claim(mesh, request, digest))
        if existing is None:
            return replace(admission, claimed=True)
        difference = reuse_difference(
            identity_of_record(existing),
            identity_of_request(mesh, request),
            parameter_defaults=self._defaults(existing.mesh, existing.operation),
        )
        if difference is not None:
            raise AdmissionRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"operation_id {request.operation_id!r} is already used by {existing.mesh} "
                f"operation {existing.operation!r} ({difference.describe()}); choose another "
                "operation_id",
            )
        return admission

    def _claim(
        self, mesh: str, request: adapter_pb.ApplyOperationRequest, digest: str
    ) -> OperationRecord:
        now = datetime.now(UTC)
        parameters = {**self._defaults(mesh, request.operation), **request.parameters}
        return OperationRecord(
            operation_id=request.operation_id,
            mesh=mesh,
            operation=request.operation,
            state="pending",
            username=request.username,
            request={
                "operation_id": request.operation_id,
                "operation": request.operation,
                "mesh": mesh,
                "mesh_version": request.mesh_version,
                "namespace": request.namespace,
                "delete": request.delete,
                "parameters": parameters,
                "username": request.username,
                "clusters": [cluster.name for cluster in request.clusters],
                DIGEST_KEY: digest,
            },
            cluster_results=[],
            error=None,
            adapter="",
            created_at=now,
            updated_at=now,
        )

    async def answered(
        self, admission: Admission, operation: adapter_pb.Operation, address: str
    ) -> OperationRecord:
        """Record the adapter's answer, unless the event hub already stored a later outcome.

        A fast operation can finish (and the hub record it) before its ApplyOperation answer is
        handled; that PENDING snapshot must not overwrite the final state. A resumed operation
        (a higher attempt) does replace an earlier terminal record.
        """
        record = messages.record_from_operation(
            operation, mesh=admission.mesh, adapter_address=address
        )
        record = replace(record, request={**record.request, DIGEST_KEY: admission.digest})
        existing = await self._store.get_operation(record.operation_id)
        if (
            existing is not None
            and existing.state in TERMINAL_STATES
            and record.state not in TERMINAL_STATES
            and _attempt(record) <= _attempt(existing)
        ):
            return existing
        return await self._store.save_operation(record)

    async def failed(self, admission: Admission, error: BaseException) -> OperationRecord | None:
        """After forwarding failed: the operation when an adapter created it anyway, else None
        (the claim released when no adapter has it)."""
        if not admission.claimed:
            return None
        if isinstance(error, grpc.aio.AioRpcError) and error.code() in _REFUSALS:
            await self._store.release_operation(admission.operation_id)
            return None
        found, unknown = await self._ask_replicas(admission)
        if found is not None:
            operation, address = found
            _log.warning(
                "admission.created_despite_error",
                operation_id=admission.operation_id,
                mesh=admission.mesh,
                replica=address,
                error=repr(error)[:200],
            )
            return await self.answered(admission, operation, address)
        if not unknown:
            await self._store.release_operation(admission.operation_id)
        return None

    async def _ask_replicas(
        self, admission: Admission
    ) -> tuple[tuple[adapter_pb.Operation, str] | None, bool]:
        """(the operation and the replica that has it, or None; whether a replica could not say)."""
        unknown = False
        request = adapter_pb.GetOperationRequest(operation_id=admission.operation_id)
        for replica in self._registry.mesh_replicas(admission.mesh):
            stub = adapter_grpc.MeshAdapterServiceStub(self._registry.channel(replica.address))
            try:
                answer = await stub.GetOperation(request, timeout=_RECONCILE_SECONDS)
            except grpc.aio.AioRpcError as exc:
                unknown = unknown or exc.code() != grpc.StatusCode.NOT_FOUND
                continue
            except Exception:
                unknown = True
                continue
            return (answer.operation, replica.address), unknown
        return None, unknown
