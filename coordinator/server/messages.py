"""Protobuf ↔ coordinator records: the only place the servicer's messages meet the store's types.

Stored operation records keep the operation as the adapter resolved it (id, catalogue id,
version, namespace, parameters, cluster names, attempt) under ``request`` — never a kubeconfig
or a custom body, which can hold credentials — plus state, per-cluster results and the error, so
a record can be turned back into an adapter ``Operation`` when the adapter is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.server.replicas import Replica, ReplicaState, Source
from coordinator.store.records import OperationFilter, OperationRecord, StoredEvent
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.coordinator.v1 import coordinator_pb2 as pb

__all__ = [
    "OPERATION_STATES",
    "FeedView",
    "adapters_to_pb",
    "event_from_payload",
    "history_filter",
    "operation_from_record",
    "record_from_operation",
    "record_to_pb",
    "replica_to_pb",
    "severity_name",
    "state_name",
    "state_value",
    "timestamp",
]

OPERATION_STATES: Mapping[int, str] = {
    adapter_pb.OPERATION_STATE_UNSPECIFIED: "unspecified",
    adapter_pb.OPERATION_STATE_PENDING: "pending",
    adapter_pb.OPERATION_STATE_RUNNING: "running",
    adapter_pb.OPERATION_STATE_SUCCEEDED: "succeeded",
    adapter_pb.OPERATION_STATE_FAILED: "failed",
    adapter_pb.OPERATION_STATE_CANCELLED: "cancelled",
    adapter_pb.OPERATION_STATE_INTERRUPTED: "interrupted",
}
_STATE_VALUES = {name: value for value, name in OPERATION_STATES.items()}

_SEVERITIES: Mapping[int, str] = {
    adapter_pb.EVENT_SEVERITY_INFO: "info",
    adapter_pb.EVENT_SEVERITY_WARNING: "warning",
    adapter_pb.EVENT_SEVERITY_ERROR: "error",
}

_REPLICA_STATES = {
    ReplicaState.CONNECTING: pb.REPLICA_STATE_CONNECTING,
    ReplicaState.SERVING: pb.REPLICA_STATE_SERVING,
    ReplicaState.NOT_SERVING: pb.REPLICA_STATE_NOT_SERVING,
}
_SOURCES = {
    Source.STATIC: pb.REGISTRATION_SOURCE_STATIC,
    Source.DYNAMIC: pb.REGISTRATION_SOURCE_DYNAMIC,
    Source.KUBERNETES: pb.REGISTRATION_SOURCE_KUBERNETES,
}

# Operation fields that describe what was asked (as resolved); the rest is outcome.
_REQUEST_FIELDS = (
    "operation_id",
    "operation",
    "mesh",
    "mesh_version",
    "namespace",
    "delete",
    "parameters",
    "username",
    "clusters",
    "attempt",
)


def state_name(value: int) -> str:
    """``OPERATION_STATE_RUNNING`` → ``"running"`` (the store's spelling)."""
    return OPERATION_STATES.get(value, "unspecified")


def state_value(name: str) -> int:
    """The store's ``"running"`` → ``OPERATION_STATE_RUNNING`` (UNSPECIFIED when unknown)."""
    return _STATE_VALUES.get(name.lower(), adapter_pb.OPERATION_STATE_UNSPECIFIED)


def severity_name(value: int) -> str | None:
    """``EVENT_SEVERITY_WARNING`` → ``"warning"``; UNSPECIFIED → None (no filter)."""
    return _SEVERITIES.get(value)


def timestamp(value: datetime | None) -> Timestamp | None:
    """An aware datetime as a Timestamp (None stays None)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _datetime(message: Any, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    value: datetime = getattr(message, field).ToDatetime(tzinfo=UTC)
    return value


def _dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return result


# -- replicas -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FeedView:
    """How the coordinator's follower of one replica's event stream is doing."""

    last_sequence: int = 0
    error: str = ""
    skipped_events: int = 0


def replica_to_pb(replica: Replica, *, feed: FeedView | None = None) -> pb.AdapterReplica:
    """One replica as ListAdapters shows it (``last_error``: its own, else the feed's)."""
    feed = feed or FeedView()
    feed_error = f"event feed: {feed.error}" if feed.error else ""
    message = pb.AdapterReplica(
        address=replica.address,
        state=_REPLICA_STATES[replica.state],
        adapter_version=replica.adapter_version,
        last_error=replica.last_error or feed_error,
        source=_SOURCES[replica.source],
        event_stream_id=replica.event_stream_id,
        last_event_sequence=feed.last_sequence,
        event_feed_error=feed.error,
        skipped_events=feed.skipped_events,
    )
    message.state_change_time.FromDatetime(replica.state_change_time.astimezone(UTC))
    return message


def adapters_to_pb(
    replicas: Iterable[Replica], *, feeds: Mapping[str, FeedView] | None = None
) -> list[pb.Adapter]:
    """Group replicas by mesh (sorted), replicas by address; ``feeds`` by address."""
    views = feeds or {}
    by_mesh: dict[str, list[Replica]] = {}
    for replica in replicas:
        by_mesh.setdefault(replica.mesh, []).append(replica)
    adapters = []
    for mesh in sorted(by_mesh):
        members = sorted(by_mesh[mesh], key=lambda r: r.address)
        contract = next((r.contract_version for r in members if r.contract_version), "")
        adapters.append(
            pb.Adapter(
                mesh=mesh,
                contract_version=contract,
                replicas=[replica_to_pb(r, feed=views.get(r.address)) for r in members],
            )
        )
    return adapters


# -- operations ---------------------------------------------------------------------------------


def record_from_operation(
    operation: adapter_pb.Operation,
    *,
    mesh: str,
    adapter_address: str,
    now: datetime | None = None,
) -> OperationRecord:
    """The store record of an adapter ``Operation`` (as ApplyOperation/GetOperation return it).

    ``created_at`` is the adapter's create time; the store keeps the first save's anyway.
    """
    now = now or datetime.now(UTC)
    described = _dict(operation)
    request = {key: described[key] for key in _REQUEST_FIELDS if key in described}
    request["mesh"] = operation.mesh or mesh
    return OperationRecord(
        operation_id=operation.operation_id,
        mesh=mesh,
        operation=operation.operation,
        state=state_name(operation.state),
        username=operation.username,
        request=request,
        cluster_results=[_dict(result) for result in operation.cluster_results],
        error=_dict(operation.error) if operation.HasField("error") else None,
        adapter=adapter_address,
        created_at=_datetime(operation, "create_time") or now,
        updated_at=now,
        started_at=_datetime(operation, "start_time"),
        finished_at=_datetime(operation, "end_time"),
    )


def operation_from_record(record: OperationRecord) -> adapter_pb.Operation:
    """Rebuild the adapter ``Operation`` from a stored record (unknown keys are ignored)."""
    operation = adapter_pb.Operation()
    json_format.ParseDict(record.request, operation, ignore_unknown_fields=True)
    operation.operation_id = record.operation_id
    operation.operation = record.operation
    operation.mesh = operation.mesh or record.mesh
    operation.username = record.username
    operation.state = state_value(record.state)  # type: ignore[assignment]
    for result in record.cluster_results:
        json_format.ParseDict(result, operation.cluster_results.add(), ignore_unknown_fields=True)
    if record.error:
        json_format.ParseDict(record.error, operation.error, ignore_unknown_fields=True)
    for field, value in (
        ("create_time", record.created_at),
        ("start_time", record.started_at),
        ("end_time", record.finished_at),
    ):
        if value is not None:
            getattr(operation, field).FromDatetime(value.astimezone(UTC))
    return operation


def record_to_pb(record: OperationRecord) -> pb.OperationRecord:
    """A stored record as the coordinator API returns it."""
    message = pb.OperationRecord(
        mesh=record.mesh,
        adapter_address=record.adapter,
        operation=operation_from_record(record),
    )
    message.update_time.FromDatetime(record.updated_at.astimezone(UTC))
    return message


def history_filter(request: pb.ListOperationHistoryRequest) -> OperationFilter:
    """ListOperationHistory's filters as the store's ``OperationFilter``.

    Raises ValueError (INVALID_ARGUMENT) for an end before the start: an empty answer would
    hide the mistake.
    """
    since = _datetime(request, "start_time")
    until = _datetime(request, "end_time")
    if since is not None and until is not None and until < since:
        raise ValueError(
            f"end_time {until.isoformat()} is before start_time {since.isoformat()}; "
            "swap them or widen the range"
        )
    return OperationFilter(
        mesh=request.mesh or None,
        state=state_name(request.state) if request.state else None,
        username=request.username or None,
        operation=request.operation or None,
        since=since,
        until=until,
    )


# -- events -------------------------------------------------------------------------------------


def event_from_payload(stored: StoredEvent, *, adapter_address: str) -> pb.WatchEventsResponse:
    """A stored event (payload = the adapter Event as a dict) as WatchEvents delivers it."""
    event = adapter_pb.Event()
    json_format.ParseDict(stored.event.payload, event, ignore_unknown_fields=True)
    return pb.WatchEventsResponse(
        cursor=stored.cursor,
        mesh=stored.event.mesh or event.mesh,
        adapter_address=adapter_address,
        event=event,
    )
