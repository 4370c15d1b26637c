"""The gRPC door of an adapter: `MeshAdapterService` on top of the runner and the event log.

Each RPC converts its request to kit dataclasses (`messages`), calls the runner, the event log,
the version catalogue or the executor, and maps kit errors to gRPC status codes with messages
that name the field and the fix. Nothing below this module sees protobuf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any, NoReturn

import grpc
import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category
from adapters.kit.grpc import messages
from adapters.kit.grpc.callers import forwarded_caller
from adapters.kit.model.records import ClusterTarget
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.events import EventLogClosed, SequenceOutOfRange, SubscriberOverflow
from adapters.kit.run.request_admission import DNS1123_LABEL
from adapters.kit.run.request_errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestError,
    Unavailable,
)
from adapters.kit.run.runner import OperationRunner
from adapters.kit.run.seam import ClusterExecutor, VersionCatalog
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving.grpc_server import GrpcServer
from serving.input_quoting import quoted
from serving.message_limits import ADAPTER_RESPONSE_BYTES

__all__ = [
    "CONTRACT_VERSION",
    "SERVICE_NAME",
    "AdapterInfo",
    "MeshAdapterServicer",
    "kit_capabilities",
    "serve_on",
]

_log = structlog.get_logger(__name__)

CONTRACT_VERSION = "v1"
MAX_RENDERED_BYTES = ADAPTER_RESPONSE_BYTES - 64 * 1024
"""Largest RenderOperation manifests: what an adapter answer may carry, less room for the rest."""
SERVICE_NAME = "meshplane.adapter.v1.MeshAdapterService"

_CODES: dict[type[RequestError], Any] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    Unavailable: grpc.StatusCode.UNAVAILABLE,
}


@dataclass(frozen=True, kw_only=True)
class AdapterInfo:
    """Build and configuration facts GetInfo reports."""

    adapter_version: str
    git_sha: str
    chart_repository_url: str
    capabilities: tuple[str, ...] = ()


def kit_capabilities(declaration: MeshDeclaration) -> tuple[str, ...]:
    """What every kit adapter offers, plus what the declaration adds."""
    found = [
        "multi-cluster",
        "cancel",
        "mesh-status",
        "resume",
        "event-replay",
        "meshery",
        "dry-run",
        "render",
    ]
    if any(spec.category is Category.CUSTOM or spec.custom for spec in declaration.operations):
        found.append("custom-operation")
    found.extend(declaration.capabilities)
    return tuple(dict.fromkeys(found))


async def _fail(context: Any, code: Any, message: str) -> NoReturn:
    """End the call with ``code``; ``context.abort`` raises, so this never returns."""
    await context.abort(code, message)
    raise AssertionError("context.abort returned")


class MeshAdapterServicer(pb_grpc.MeshAdapterServiceServicer):
    """Implements every RPC of `meshplane.adapter.v1.MeshAdapterService` for one mesh."""

    def __init__(
        self,
        *,
        declaration: MeshDeclaration,
        runner: OperationRunner,
        events: EventLog,
        versions: VersionCatalog,
        executor: ClusterExecutor,
        info: AdapterInfo,
        default_cluster: ClusterTarget | None = None,
        trust_forwarded_identity: bool = False,
    ) -> None:
        self._declaration = declaration
        self._runner = runner
        self._events = events
        self._versions = versions
        self._executor = executor
        self._info = info
        self._default_cluster = default_cluster or ClusterTarget(name="default")
        self._trust_forwarded_identity = trust_forwarded_identity
        """True when every caller is the coordinator (link token or client certificate), so its
        identity headers name the end user; otherwise they are ignored."""

    async def _abort(self, context: Any, error: RequestError) -> NoReturn:
        await _fail(context, _CODES.get(type(error), grpc.StatusCode.INTERNAL), str(error))

    async def GetInfo(self, request: pb.GetInfoRequest, context: Any) -> pb.GetInfoResponse:
        """Identify the adapter, its build and its event stream."""
        return pb.GetInfoResponse(
            mesh=self._declaration.mesh,
            adapter_version=self._info.adapter_version,
            git_sha=self._info.git_sha,
            contract_version=CONTRACT_VERSION,
            capabilities=list(self._info.capabilities or kit_capabilities(self._declaration)),
            event_stream_id=self._events.stream_id,
            chart_repository_url=self._info.chart_repository_url,
            default_namespace=self._declaration.default_namespace,
        )

    async def ListOperations(
        self, request: pb.ListOperationsRequest, context: Any
    ) -> pb.ListOperationsResponse:
        """The catalogue, straight from the declaration."""
        return pb.ListOperationsResponse(
            operations=[messages.spec_to_pb(s) for s in self._declaration.operations]
        )

    async def ListMeshVersions(
        self, request: pb.ListMeshVersionsRequest, context: Any
    ) -> pb.ListMeshVersionsResponse:
        """Installable versions from the chart repository index."""
        try:
            versions = await self._versions.versions()
            default = await self._versions.default_version()
        except Exception as exc:
            _log.warning("servicer.versions_unavailable", error=str(exc))
            await _fail(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"cannot read the chart repository index ({self._info.chart_repository_url}): "
                f"{quoted(str(exc))}; check --chart-repo, or use --mirror for offline installs",
            )
        return pb.ListMeshVersionsResponse(
            versions=[messages.version_to_pb(v) for v in versions], default_version=default
        )

    async def ApplyOperation(
        self, request: pb.ApplyOperationRequest, context: Any
    ) -> pb.ApplyOperationResponse:
        """Validate and record; the work runs in the background. A dry run is validated the
        same way, then done before the answer and never recorded (`OperationRunner.dry_run`).

        From a trusted coordinator, the end user it names replaces the request's ``username``
        and a member of ``meshplane:admins`` is marked as such for the object policy.
        """
        submitted = messages.request_from_pb(request)
        caller = (
            forwarded_caller(context.invocation_metadata())
            if self._trust_forwarded_identity
            else None
        )
        if caller is not None:
            submitted = replace(submitted, username=caller.subject, admin=caller.admin)
        if request.dry_run:
            try:
                dry_run = await self._runner.dry_run(submitted)
            except RequestError as error:
                await self._abort(context, error)
            return messages.dry_run_to_pb(dry_run)
        try:
            record, created = await self._runner.submit(submitted)
        except RequestError as error:
            await self._abort(context, error)
        return pb.ApplyOperationResponse(
            operation_id=record.operation_id,
            operation=messages.record_to_pb(record),
            created=created,
        )

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: Any
    ) -> pb.GetOperationResponse:
        """The operation's current record (also after an adapter restart)."""
        record = self._runner.get(request.operation_id)
        if record is None:
            await _fail(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"operation_id: no operation {quoted(request.operation_id)} is recorded (ids "
                "are kept "
                "for the newest operations only)",
            )
        return pb.GetOperationResponse(operation=messages.record_to_pb(record))

    async def CancelOperation(
        self, request: pb.CancelOperationRequest, context: Any
    ) -> pb.CancelOperationResponse:
        """Stop a pending or running operation; applied objects stay applied."""
        try:
            record = await self._runner.cancel(request.operation_id)
        except RequestError as error:
            await self._abort(context, error)
        return pb.CancelOperationResponse(operation=messages.record_to_pb(record))

    async def StreamEvents(
        self, request: pb.StreamEventsRequest, context: Any
    ) -> AsyncIterator[pb.StreamEventsResponse]:
        """Replay retained events after `after_sequence`, then follow live ones."""
        try:
            subscription = self._events.subscribe(
                after_sequence=request.after_sequence, operation_id=request.operation_id
            )
        except SequenceOutOfRange as exc:
            context.set_code(grpc.StatusCode.OUT_OF_RANGE)
            context.set_details(str(exc))
            return
        except EventLogClosed as exc:
            context.set_code(grpc.StatusCode.UNAVAILABLE)
            context.set_details(
                f"the adapter is shutting down; resume StreamEvents with "
                f"after_sequence={exc.last_sequence} once it is back"
            )
            return
        with subscription:
            try:
                async for event in subscription:
                    yield pb.StreamEventsResponse(event=messages.event_to_pb(event))
            except SubscriberOverflow as exc:
                context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
                context.set_details(
                    f"this stream fell more than {self._events.queue_size} events behind; "
                    f"resume StreamEvents with after_sequence={exc.last_sequence}"
                )
            except EventLogClosed as exc:
                context.set_code(grpc.StatusCode.UNAVAILABLE)
                context.set_details(
                    f"the adapter is shutting down; resume StreamEvents with "
                    f"after_sequence={exc.last_sequence} once it is back"
                )

    async def GetMeshStatus(
        self, request: pb.GetMeshStatusRequest, context: Any
    ) -> pb.GetMeshStatusResponse:
        """Inspect the mesh in one cluster through the executor."""
        target = self._default_cluster
        if request.HasField("cluster"):
            requested = messages.cluster_from_pb(request.cluster)
            if not requested.name:
                requested = dataclasses.replace(requested, name=self._default_cluster.name)
            try:
                target = await self._runner.cluster_target(requested, field="cluster")
            except RequestError as error:
                await self._abort(context, error)
        namespace = request.namespace or self._status_namespace()
        if len(namespace) > 63 or not DNS1123_LABEL.fullmatch(namespace):
            await _fail(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"namespace: {quoted(namespace)} is not a valid DNS-1123 label (lower-case "
                "letters, "
                "digits, '-', at most 63 characters)",
            )
        try:
            status = await self._executor.status(target, namespace)
        except Exception as exc:
            _log.warning("servicer.status_failed", cluster=target.name, error=str(exc))
            await _fail(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"cannot inspect cluster {quoted(target.name)}: {quoted(str(exc))}; check the "
                "kubeconfig and that "
                "the Kubernetes API is reachable",
            )
        return messages.status_to_pb(status)

    async def RenderOperation(
        self, request: pb.RenderOperationRequest, context: Any
    ) -> pb.RenderOperationResponse:
        """The manifests an operation would apply, validated and planned as ApplyOperation
        would; an answer too large to send is refused with its size."""
        submitted = messages.render_request_from_pb(request)
        if submitted.clusters and not submitted.clusters[0].name:
            submitted = replace(
                submitted,
                clusters=(replace(submitted.clusters[0], name=self._default_cluster.name),),
            )
        try:
            rendering = await self._runner.render(submitted)
        except RequestError as error:
            await self._abort(context, error)
        text = rendering.text()
        size = len(text.encode())
        if size > MAX_RENDERED_BYTES:
            await _fail(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"the {rendering.count} rendered manifests take {size} bytes, more than the "
                f"{MAX_RENDERED_BYTES} an answer may carry; render with parameters that select "
                "less, or use a dry run (ApplyOperationRequest.dry_run)",
            )
        return messages.rendering_to_pb(rendering, text)

    def _status_namespace(self) -> str:
        spec = self._declaration.operation(self._declaration.status_release)
        return spec.default_namespace if spec else self._declaration.default_namespace


def serve_on(server: GrpcServer, servicer: MeshAdapterServicer) -> None:
    """Register the servicer (and its health and reflection names) on a `GrpcServer`."""
    server.add_service(pb_grpc.add_MeshAdapterServiceServicer_to_server, servicer, SERVICE_NAME)
