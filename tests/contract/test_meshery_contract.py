"""The Meshery door implements exactly `meshes.MeshService`, on the wire facts Meshery relies on,
and every native category and severity has a Meshery value."""

from __future__ import annotations

import inspect

from adapters.kit.grpc import meshery_messages as translate
from adapters.kit.grpc.meshery_servicer import MESHERY_SERVICE_NAME, MesheryServicer
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.meshery import meshops_pb2 as meshes

SERVICE = meshes.DESCRIPTOR.services_by_name["MeshService"]


def test_servicer_implements_exactly_the_declared_rpcs() -> None:
    implemented = {
        name
        for name, member in vars(MesheryServicer).items()
        if name[:1].isupper()
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    }
    assert implemented == {method.name for method in SERVICE.methods}
    assert SERVICE.full_name == MESHERY_SERVICE_NAME
    for method in SERVICE.methods:
        handler = vars(MesheryServicer)[method.name]
        assert inspect.isasyncgenfunction(handler) == method.server_streaming, method.name


def fields(message: type) -> dict[str, int]:
    """A message's field numbers by name."""
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def assert_method_paths() -> None:
    assert meshes.DESCRIPTOR.package == "meshes"
    assert {m.name: (m.input_type.name, m.output_type.name) for m in SERVICE.methods} == {
        "MeshName": ("MeshNameRequest", "MeshNameResponse"),
        "ApplyOperation": ("ApplyRuleRequest", "ApplyRuleResponse"),
        "SupportedOperations": ("SupportedOperationsRequest", "SupportedOperationsResponse"),
        "StreamEvents": ("EventsRequest", "EventsResponse"),
        "ProcessOAM": ("ProcessOAMRequest", "ProcessOAMResponse"),
        "MeshVersions": ("MeshVersionsRequest", "MeshVersionsResponse"),
        "ComponentInfo": ("ComponentInfoRequest", "ComponentInfoResponse"),
    }


def assert_field_numbers() -> None:
    assert fields(meshes.ApplyRuleRequest) == {
        "opName": 1,
        "namespace": 2,
        "username": 3,
        "custom_body": 4,
        "delete_op": 5,
        "operation_id": 6,
        "kube_configs": 7,
        "version": 8,
    }
    assert fields(meshes.ApplyRuleResponse) == {"error": 1, "operation_id": 2}
    assert fields(meshes.EventsResponse) == {
        "event_type": 1,
        "summary": 2,
        "details": 3,
        "operation_id": 4,
        "probable_cause": 5,
        "suggested_remediation": 6,
        "error_code": 7,
        "component": 8,
        "component_name": 9,
    }
    assert fields(meshes.ProcessOAMRequest) == {
        "username": 1,
        "delete_op": 2,
        "oam_comps": 3,
        "oam_config": 4,
        "kube_configs": 7,
    }
    assert fields(meshes.SupportedOperation) == {"key": 1, "value": 2, "category": 3}
    assert fields(meshes.ComponentInfoResponse) == {
        "type": 1,
        "name": 2,
        "version": 3,
        "git_sha": 4,
        "properties": 5,
    }


def assert_enum_values() -> None:
    assert dict(meshes.OpCategory.items()) == {
        "INSTALL": 0,
        "SAMPLE_APPLICATION": 1,
        "CONFIGURE": 2,
        "VALIDATE": 3,
        "CUSTOM": 4,
    }
    assert dict(meshes.EventType.items()) == {"INFO": 0, "WARN": 1, "ERROR": 2}


def test_wire_facts() -> None:
    """Package, method paths, field numbers and names, enum values: what Meshery sends."""
    assert_method_paths()
    assert_field_numbers()
    assert_enum_values()


def test_every_native_category_and_severity_has_its_meshery_value() -> None:
    for value in pb.OperationCategory.DESCRIPTOR.values:
        if value.number == 0:
            continue
        name = value.name.removeprefix("OPERATION_CATEGORY_")
        catalogue = pb.ListOperationsResponse(
            operations=[pb.OperationDescriptor(id="x", category=value.number)]
        )
        [op] = translate.supported_operations_from_native(catalogue).ops
        assert meshes.OpCategory.Name(op.category) == name
    expected = {"INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}
    for value in pb.EventSeverity.DESCRIPTOR.values:
        if value.number == 0:
            continue
        event = translate.event_from_native(pb.Event(severity=value.number, mesh="istio"))
        name = value.name.removeprefix("EVENT_SEVERITY_")
        assert meshes.EventType.Name(event.event_type) == expected[name]
        assert (event.component, event.component_name) == ("adapter", "ISTIO")


def test_refusal_wording_names_what_meshery_sent() -> None:
    cases = {
        "clusters[2].kubeconfig: exec plugins are refused": "kube_configs[2]: exec plugins",
        "operation: 'x' is not in the catalogue (see ListOperations)": "opName: 'x' is not in "
        "the catalogue (see SupportedOperations)",
        "mesh_version: '9' is not in the chart repository": "version: '9' is not",
        "delete: cannot be undone; send it with delete=false": "delete_op: cannot be undone; "
        "send it with delete_op=false",
        "operation_id 'a' already names a different request: clusters was ['x']": "kube_configs "
        "was ['x']",
        "namespace: 'B' is not valid; the operation applies": "namespace: 'B' is not valid; the "
        "operation applies",
    }
    for native, meshery in cases.items():
        assert meshery in translate.meshery_wording(native), native


def test_cluster_names_follow_the_current_context_and_stay_unique() -> None:
    configs = [
        "apiVersion: v1\ncurrent-context: kind-dev\n",
        'current-context: "gke_proj_zone_Prod"\n',
        "current-context: kind-dev\n",
        "kind: Config\n",
        "current-context: " + "x" * 300 + "\n",
    ]
    assert translate.cluster_names(configs) == (
        "kind-dev",
        "gke-proj-zone-prod",
        "kind-dev-2",
        "context-3",
        "x" * 40,
    )
