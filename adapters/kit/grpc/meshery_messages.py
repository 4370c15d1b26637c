"""Meshery's wire contract (`meshes.MeshService`) in terms of ours: message translations.

Meshery's messages are translated to and from `meshplane.adapter.v1` messages, never to kit
dataclasses directly: the Meshery door (`meshery_servicer`) hands every request to the native
door, so both doors share one conversion to the kit (`messages`) and every rule behind it.

Meshery has no cluster names, parameters, timeouts, sequences or per-cluster results; what it
lacks takes the native default (the operation's parameter defaults, the adapter's timeout), and
what only we have travels in `details` (the cluster and the Kubernetes object of an event).
"""

from __future__ import annotations

import re

from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.meshery import meshops_pb2 as meshes

__all__ = [
    "COMPONENT_TYPE",
    "apply_request_to_native",
    "apply_response_from_native",
    "cluster_names",
    "component_info_from_native",
    "event_from_native",
    "mesh_name",
    "meshery_wording",
    "supported_operations_from_native",
    "versions_from_native",
]

COMPONENT_TYPE = "adapter"
"""ComponentInfo.type and EventsResponse.component, as Meshery's adapters report them."""
CLUSTER_NAME_LIMIT = 40

_CATEGORIES: dict[pb.OperationCategory.ValueType, meshes.OpCategory.ValueType] = {
    pb.OPERATION_CATEGORY_INSTALL: meshes.INSTALL,
    pb.OPERATION_CATEGORY_SAMPLE_APPLICATION: meshes.SAMPLE_APPLICATION,
    pb.OPERATION_CATEGORY_CONFIGURE: meshes.CONFIGURE,
    pb.OPERATION_CATEGORY_VALIDATE: meshes.VALIDATE,
    pb.OPERATION_CATEGORY_CUSTOM: meshes.CUSTOM,
}
_EVENT_TYPES: dict[pb.EventSeverity.ValueType, meshes.EventType.ValueType] = {
    pb.EVENT_SEVERITY_INFO: meshes.INFO,
    pb.EVENT_SEVERITY_WARNING: meshes.WARN,
    pb.EVENT_SEVERITY_ERROR: meshes.ERROR,
}
_CURRENT_CONTEXT = re.compile(r"^current-context:[ \t]*[\"']?([^\"'\s#]+)", re.MULTILINE)
_NOT_IN_NAME = re.compile(r"[^a-z0-9-]+")

# Native field and method names in refusal messages → the names a Meshery caller sent and can
# call. Messages start with the field ("clusters[0].kubeconfig: ..."); the re-used
# operation_id rule names it mid-sentence ("... mesh_version was '1.0.0', ...").
_WORDING: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bclusters\[(\d+)\](?:\.(?:kubeconfig|context|name))?"), r"kube_configs[\1]"),
    (re.compile(r"^clusters(?=:)|\bclusters(?= was )"), "kube_configs"),
    (re.compile(r"\bmesh_version\b"), "version"),
    (re.compile(r"^operation(?=:)|\boperation(?= was )"), "opName"),
    (re.compile(r"^delete(?=:)|\bdelete(?= was |=)"), "delete_op"),
    (re.compile(r"\bListOperations\b"), "SupportedOperations"),
    (re.compile(r"\bListMeshVersions\b"), "MeshVersions"),
)


def mesh_name(mesh: str) -> str:
    """The mesh in Meshery's spelling (its adapters answer "ISTIO", "LINKERD", "CONSUL")."""
    return mesh.upper()


def meshery_wording(text: str) -> str:
    """A native refusal message with the field and method names a Meshery caller knows."""
    for pattern, replacement in _WORDING:
        text = pattern.sub(replacement, text)
    return text


def cluster_names(kube_configs: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """One cluster name per kubeconfig: its current-context (as a DNS label), else context-N.

    Meshery sends one minified kubeconfig per selected context; the name only labels results and
    events, so it is read with a line match (nothing is parsed or loaded before the native door
    judges the kubeconfig). Names are unique within the request.
    """
    names: list[str] = []
    for index, kubeconfig in enumerate(kube_configs):
        found = _CURRENT_CONTEXT.search(kubeconfig)
        name = ""
        if found is not None:
            name = _NOT_IN_NAME.sub("-", found.group(1).lower()).strip("-")[:CLUSTER_NAME_LIMIT]
            name = name.strip("-")
        if not name or name in names:
            name = f"{name or 'context'}-{index}"
        names.append(name)
    return tuple(names)


def apply_request_to_native(request: meshes.ApplyRuleRequest) -> pb.ApplyOperationRequest:
    """ApplyRuleRequest → ApplyOperationRequest (one cluster per kubeconfig, at its context)."""
    kube_configs = tuple(request.kube_configs)
    return pb.ApplyOperationRequest(
        operation_id=request.operation_id,
        operation=request.opName,
        mesh_version=request.version,
        namespace=request.namespace,
        delete=request.delete_op,
        custom_body=request.custom_body,
        clusters=[
            pb.Cluster(name=name, kubeconfig=kubeconfig)
            for name, kubeconfig in zip(cluster_names(kube_configs), kube_configs, strict=True)
        ],
        username=request.username,
    )


def _earlier_run(operation: pb.Operation) -> str:
    """What ApplyRuleResponse.error says when the id names an operation that already failed."""
    state = pb.OperationState.Name(operation.state).removeprefix("OPERATION_STATE_").lower()
    text = f"operation {operation.operation_id} already ran and {state}"
    if operation.error.message:
        text += f": {operation.error.message}"
    if operation.error.suggested_remediation:
        text += f"; {operation.error.suggested_remediation}"
    return f"{text}; to run it again, send ApplyOperation with a new operation_id"


def apply_response_from_native(response: pb.ApplyOperationResponse) -> meshes.ApplyRuleResponse:
    """Accepted (or already known) operation → ApplyRuleResponse; `error` only for a re-sent id
    whose operation failed or was cancelled (a refused request is a gRPC status instead)."""
    operation = response.operation
    failed = not response.created and operation.state in (
        pb.OPERATION_STATE_FAILED,
        pb.OPERATION_STATE_CANCELLED,
    )
    return meshes.ApplyRuleResponse(
        operation_id=response.operation_id, error=_earlier_run(operation) if failed else ""
    )


def supported_operations_from_native(
    response: pb.ListOperationsResponse,
) -> meshes.SupportedOperationsResponse:
    """The catalogue: key = operation id, value = description; error empty (it succeeded)."""
    return meshes.SupportedOperationsResponse(
        ops=[
            meshes.SupportedOperation(
                key=descriptor.id,
                value=descriptor.description,
                # A category Meshery does not know is shown with the configuration operations.
                category=_CATEGORIES.get(descriptor.category, meshes.CONFIGURE),
            )
            for descriptor in response.operations
        ],
        error="",
    )


def versions_from_native(response: pb.ListMeshVersionsResponse) -> meshes.MeshVersionsResponse:
    """Installable versions, newest first, as plain strings."""
    return meshes.MeshVersionsResponse(version=[v.version for v in response.versions])


def component_info_from_native(info: pb.GetInfoResponse) -> meshes.ComponentInfoResponse:
    """GetInfo → ComponentInfo; what Meshery has no field for goes into `properties`."""
    return meshes.ComponentInfoResponse(
        type=COMPONENT_TYPE,
        name=mesh_name(info.mesh),
        version=info.adapter_version,
        git_sha=info.git_sha,
        properties={
            "mesh": info.mesh,
            "contract": f"meshplane.adapter.{info.contract_version}",
            "capabilities": ",".join(info.capabilities),
            "chart_repository": info.chart_repository_url,
            "default_namespace": info.default_namespace,
            "event_stream_id": info.event_stream_id,
        },
    )


def _details(event: pb.Event) -> str:
    lines = [event.details] if event.details else []
    if event.error.message and event.error.message not in event.details:
        lines.append(event.error.message)
    where = " · ".join(
        part
        for part in (
            f"cluster {event.cluster}" if event.cluster else "",
            event.component,
        )
        if part
    )
    if where:
        lines.append(where)
    return "\n".join(lines)


def event_from_native(event: pb.Event) -> meshes.EventsResponse:
    """Event → EventsResponse: WARNING is WARN; cause, remediation and code come from the error."""
    return meshes.EventsResponse(
        event_type=_EVENT_TYPES.get(event.severity, meshes.INFO),
        summary=event.summary,
        details=_details(event),
        operation_id=event.operation_id,
        probable_cause=event.error.probable_cause,
        suggested_remediation=event.error.suggested_remediation,
        error_code=event.error.code,
        component=COMPONENT_TYPE,
        component_name=mesh_name(event.mesh),
    )
