"""The adapter servicer implements exactly the RPCs of `meshplane.adapter.v1.MeshAdapterService`,
and the kit's enums map one-to-one onto the contract's."""

from __future__ import annotations

import inspect

from adapters.kit.declare.operations import Category
from adapters.kit.grpc import messages
from adapters.kit.grpc.servicer import SERVICE_NAME, MeshAdapterServicer
from adapters.kit.model.records import OperationState, Severity
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["MeshAdapterService"]


def _own_rpcs(cls: type) -> set[str]:
    return {
        name
        for name, member in vars(cls).items()
        if name[:1].isupper()
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    }


def test_servicer_implements_exactly_the_declared_rpcs() -> None:
    declared = {method.name for method in SERVICE.methods}
    implemented = _own_rpcs(MeshAdapterServicer)
    assert implemented == declared, (
        f"missing: {sorted(declared - implemented)}, extra: {sorted(implemented - declared)}"
    )
    assert SERVICE.full_name == SERVICE_NAME


def test_streaming_shape_matches_the_descriptor() -> None:
    for method in SERVICE.methods:
        handler = vars(MeshAdapterServicer)[method.name]
        assert inspect.isasyncgenfunction(handler) == method.server_streaming, method.name
        assert not method.client_streaming
        # Overriding the generated base: every RPC name exists there too.
        assert hasattr(pb_grpc.MeshAdapterServiceServicer, method.name)


def test_kit_enums_map_onto_the_contract_both_ways() -> None:
    for state in OperationState:
        assert messages.state_from_pb(messages.state_to_pb(state)) is state
    contract_states = {
        value.name.removeprefix("OPERATION_STATE_")
        for value in pb.OperationState.DESCRIPTOR.values
        if value.number != 0
    }
    assert contract_states == {state.value for state in OperationState}
    contract_severities = {
        value.name.removeprefix("EVENT_SEVERITY_")
        for value in pb.EventSeverity.DESCRIPTOR.values
        if value.number != 0
    }
    assert contract_severities == {severity.value for severity in Severity}
    contract_categories = {
        value.name.removeprefix("OPERATION_CATEGORY_")
        for value in pb.OperationCategory.DESCRIPTOR.values
        if value.number != 0
    }
    assert contract_categories == {category.value for category in Category}
    assert messages.state_to_pb(None) == pb.OPERATION_STATE_UNSPECIFIED
