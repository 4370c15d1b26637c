"""Protobuf stops here: conversions between `meshplane.adapter.v1` messages and kit dataclasses.

Only this module and the servicer import the generated `_pb2` code; the runner, the event log and
the executors speak frozen dataclasses. Enum mappings are by name, so a kit enum and its protobuf
mirror cannot drift silently (a missing name fails the contract tests).
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from adapters.kit.declare.operations import Category, OperationSpec
from adapters.kit.model.object_changes import ClusterDryRun, DryRun, ObjectChange
from adapters.kit.model.records import (
    ClusterResult,
    ErrorDetail,
    OperationRecord,
    OperationRequest,
    OperationState,
    RequestedCluster,
    Severity,
)
from adapters.kit.model.renderings import Rendering
from adapters.kit.run.events import Event
from adapters.kit.run.seam import MeshStatus, MeshVersionInfo
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = [
    "category_to_pb",
    "cluster_from_pb",
    "dry_run_to_pb",
    "event_to_pb",
    "record_to_pb",
    "render_request_from_pb",
    "rendering_to_pb",
    "request_from_pb",
    "severity_to_pb",
    "spec_to_pb",
    "state_from_pb",
    "state_to_pb",
    "status_to_pb",
    "version_to_pb",
]


def state_to_pb(state: OperationState | None) -> pb.OperationState.ValueType:
    """Kit state → protobuf enum (None → UNSPECIFIED)."""
    if state is None:
        return pb.OPERATION_STATE_UNSPECIFIED
    return pb.OperationState.Value(f"OPERATION_STATE_{state.value}")


def state_from_pb(value: pb.OperationState.ValueType) -> OperationState | None:
    """Protobuf enum → kit state (UNSPECIFIED → None)."""
    name = pb.OperationState.Name(value).removeprefix("OPERATION_STATE_")
    return None if name == "UNSPECIFIED" else OperationState(name)


def severity_to_pb(severity: Severity) -> pb.EventSeverity.ValueType:
    """Kit severity → protobuf enum."""
    return pb.EventSeverity.Value(f"EVENT_SEVERITY_{severity.value}")


def category_to_pb(category: Category) -> pb.OperationCategory.ValueType:
    """Kit category → protobuf enum."""
    return pb.OperationCategory.Value(f"OPERATION_CATEGORY_{category.value}")


def _timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _error(error: ErrorDetail | None) -> pb.ErrorDetail | None:
    if error is None:
        return None
    return pb.ErrorDetail(
        code=error.code,
        message=error.message,
        probable_cause=error.probable_cause,
        suggested_remediation=error.suggested_remediation,
    )


def cluster_from_pb(cluster: pb.Cluster) -> RequestedCluster:
    """A request's cluster → `RequestedCluster` (its kubeconfig still to be judged)."""
    return RequestedCluster(
        name=cluster.name, kubeconfig=cluster.kubeconfig, context=cluster.context
    )


def request_from_pb(request: pb.ApplyOperationRequest) -> OperationRequest:
    """ApplyOperationRequest → `OperationRequest` (shape only; the runner validates values)."""
    timeout: float | None = None
    if request.HasField("timeout"):
        timeout = request.timeout.ToTimedelta().total_seconds()
    return OperationRequest(
        operation_id=request.operation_id,
        operation=request.operation,
        mesh_version=request.mesh_version,
        namespace=request.namespace,
        delete=request.delete,
        custom_body=request.custom_body,
        parameters=dict(request.parameters),
        clusters=tuple(cluster_from_pb(c) for c in request.clusters),
        username=request.username,
        timeout_seconds=timeout,
    )


def _result_to_pb(result: ClusterResult) -> pb.ClusterResult:
    return pb.ClusterResult(
        cluster=result.cluster,
        state=state_to_pb(result.state),
        error=_error(result.error),
        objects_applied=result.objects_applied,
        objects_deleted=result.objects_deleted,
        objects_unchanged=result.objects_unchanged,
        summary=result.summary,
    )


def record_to_pb(record: OperationRecord) -> pb.Operation:
    """`OperationRecord` → Operation (custom_body is not echoed back)."""
    return pb.Operation(
        operation_id=record.operation_id,
        operation=record.operation,
        mesh=record.mesh,
        mesh_version=record.mesh_version,
        namespace=record.namespace,
        delete=record.delete,
        parameters=dict(record.parameters),
        username=record.username,
        state=state_to_pb(record.state),
        cluster_results=[_result_to_pb(r) for r in record.cluster_results],
        error=_error(record.error),
        create_time=_timestamp(record.create_time),
        start_time=_timestamp(record.start_time),
        end_time=_timestamp(record.end_time),
        clusters=list(record.clusters),
        attempt=record.attempt,
    )


def event_to_pb(event: Event) -> pb.Event:
    """`Event` → Event message."""
    return pb.Event(
        sequence=event.sequence,
        operation_id=event.operation_id,
        severity=severity_to_pb(event.severity),
        summary=event.summary,
        details=event.details,
        error=_error(event.error),
        component=event.component,
        cluster=event.cluster,
        timestamp=_timestamp(event.timestamp),
        operation_state=state_to_pb(event.operation_state),
        mesh=event.mesh,
        event_stream_id=event.stream_id,
        operation=event.operation,
    )


def spec_to_pb(spec: OperationSpec) -> pb.OperationDescriptor:
    """Catalogue entry → OperationDescriptor."""
    return pb.OperationDescriptor(
        id=spec.id,
        category=category_to_pb(spec.category),
        description=spec.description,
        supports_delete=spec.supports_delete,
        parameters=[
            pb.OperationParameter(
                name=p.name,
                description=p.description,
                required=p.required,
                default_value=p.default,
                allowed_values=list(p.allowed),
            )
            for p in spec.request_parameters
        ],
        mesh_versions=list(spec.mesh_versions),
        default_namespace=spec.default_namespace,
    )


def version_to_pb(version: MeshVersionInfo) -> pb.MeshVersion:
    """One index entry → MeshVersion."""
    return pb.MeshVersion(
        version=version.version,
        app_version=version.app_version,
        prerelease=version.prerelease,
        create_time=_timestamp(version.created),
    )


def status_to_pb(status: MeshStatus) -> pb.GetMeshStatusResponse:
    """`MeshStatus` → GetMeshStatusResponse."""
    return pb.GetMeshStatusResponse(
        installed=status.installed,
        version=status.version,
        namespace=status.namespace,
        components=[
            pb.ComponentStatus(
                kind=c.kind, name=c.name, namespace=c.namespace, ready=c.ready, message=c.message
            )
            for c in status.components
        ],
        injection_namespaces=list(status.injection_namespaces),
        cluster=status.cluster,
    )


def _change_to_pb(change: ObjectChange) -> pb.ObjectChange:
    return pb.ObjectChange(
        action=pb.ObjectChangeAction.Value(f"OBJECT_CHANGE_ACTION_{change.action.value}"),
        api_version=change.ref.api_version,
        kind=change.ref.kind,
        namespace=change.ref.namespace or "",
        name=change.ref.name,
        changed_fields=list(change.changed_fields),
        message=change.message,
    )


def _cluster_dry_run_to_pb(outcome: ClusterDryRun) -> pb.ClusterDryRun:
    return pb.ClusterDryRun(
        cluster=outcome.cluster,
        changes=[_change_to_pb(change) for change in outcome.changes],
        objects_unchanged=outcome.unchanged,
        changes_omitted=outcome.omitted,
        error=_error(outcome.error),
    )


def dry_run_to_pb(dry_run: DryRun) -> pb.ApplyOperationResponse:
    """A dry run → ApplyOperationResponse (no operation_id: nothing was recorded)."""
    operation = record_to_pb(dry_run.record)
    operation.dry_run = True
    return pb.ApplyOperationResponse(
        operation=operation,
        created=False,
        dry_run_result=pb.DryRunResult(
            clusters=[_cluster_dry_run_to_pb(outcome) for outcome in dry_run.clusters]
        ),
    )


def render_request_from_pb(request: pb.RenderOperationRequest) -> OperationRequest:
    """RenderOperationRequest → the `OperationRequest` it renders (never recorded)."""
    return OperationRequest(
        operation_id="",
        operation=request.operation,
        mesh_version=request.mesh_version,
        namespace=request.namespace,
        custom_body=request.custom_body,
        parameters=dict(request.parameters),
        clusters=(cluster_from_pb(request.cluster),) if request.HasField("cluster") else (),
    )


def rendering_to_pb(rendering: Rendering, manifests: str) -> pb.RenderOperationResponse:
    """A `Rendering` and its YAML text → RenderOperationResponse."""
    return pb.RenderOperationResponse(
        manifests=manifests,
        objects=rendering.count,
        mesh_version=rendering.mesh_version,
        namespace=rendering.namespace,
        release=rendering.release,
    )
