"""The request bounds table: every request field of every RPC is bounded, and each bound bites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from meshplane.adapter.v1 import adapter_pb2
from meshplane.coordinator.v1 import coordinator_pb2
from meshplane.meshery import meshops_pb2
from meshplane.perf.v1 import perf_pb2
from serving.input_quoting import quoted
from serving.request_bounds import BOUNDED_PACKAGES, BOUNDS, FieldBound, RequestBounds
from serving.strict_numbers import NumberError, parse_integer

MODULES = (adapter_pb2, coordinator_pb2, perf_pb2, meshops_pb2)
TEXT = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)
WELL_KNOWN = ("google.protobuf.Duration", "google.protobuf.Timestamp")


def request_types() -> list[Descriptor]:
    found: list[Descriptor] = []
    for module in MODULES:
        assert module.DESCRIPTOR.package in BOUNDED_PACKAGES
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend(method.input_type for method in service.methods)
    return found


def request_fields() -> Iterator[tuple[str, FieldDescriptor]]:
    """(path, field) of every field reachable from every request type, each once per path."""

    def walk(
        message: Descriptor, prefix: str, seen: tuple[str, ...]
    ) -> Iterator[tuple[str, FieldDescriptor]]:
        for field in message.fields:
            yield prefix + field.name, field
            nested = field.message_type
            if (
                nested is not None
                and not nested.GetOptions().map_entry
                and nested.full_name not in WELL_KNOWN
                and nested.full_name not in seen
            ):
                yield from walk(nested, f"{prefix}{field.name}.", (*seen, nested.full_name))

    for request in request_types():
        yield from walk(request, f"{request.full_name}:", (request.full_name,))


BOUNDS_UNDER_TEST = RequestBounds()


def test_the_contracts_have_rpcs_to_bound() -> None:
    names = {d.full_name for d in request_types()}
    assert "meshplane.adapter.v1.ApplyOperationRequest" in names
    assert "meshplane.perf.v1.RunPerformanceTestRequest" in names
    assert len(list(request_fields())) > 80


FIELDS = list(request_fields())


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[path for path, _ in FIELDS])
def test_every_request_field_has_an_effective_bound(path: str, field: FieldDescriptor) -> None:
    bound = BOUNDS_UNDER_TEST.bound(field)
    if field.is_repeated:
        assert bound.max_items is not None, path
    element = field
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        assert bound.max_key_bytes is not None, path
        element = field.message_type.fields_by_name["value"]
    if element.type in TEXT:
        assert bound.max_bytes is not None, path
    elif element.type == FieldDescriptor.TYPE_MESSAGE:
        assert element.message_type is not None
        if element.message_type.full_name == "google.protobuf.Duration":
            assert bound.maximum is not None, path
    elif element.type not in (FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM):
        assert bound.minimum is not None and bound.maximum is not None, path


def test_every_table_entry_names_a_request_field() -> None:
    known = {field.full_name for _, field in request_fields()}
    assert set(BOUNDS) <= known, sorted(set(BOUNDS) - known)


def _over(message: Message, field: FieldDescriptor, bound: FieldBound) -> str:
    """Set ``field`` of ``message`` just over its bound; the path the violation must name."""
    name = field.name
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        assert bound.max_items is not None
        getattr(message, name).update({f"k{i}": "" for i in range(bound.max_items + 1)})
        return f"{name}: {bound.max_items + 1} entries"
    if field.is_repeated:
        assert bound.max_items is not None
        values = getattr(message, name)
        for _ in range(bound.max_items + 1):
            values.add() if field.type == FieldDescriptor.TYPE_MESSAGE else values.append(
                b"" if field.type == FieldDescriptor.TYPE_BYTES else "" if field.type in TEXT else 0
            )
        return f"{name}: {bound.max_items + 1} items"
    if field.type in TEXT:
        assert bound.max_bytes is not None
        size = bound.max_bytes + 1
        setattr(
            message, name, b"x" * size if field.type == FieldDescriptor.TYPE_BYTES else "x" * size
        )
        return f"{name}: {size} bytes"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        assert field.message_type.full_name == "google.protobuf.Duration"
        assert bound.maximum is not None
        getattr(message, name).seconds = int(bound.maximum) + 1
        return f"{name}: {int(bound.maximum) + 1}s is out of range"
    assert bound.maximum is not None
    value = int(bound.maximum) + 1
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        setattr(message, name, float(value) * 2)
    else:
        setattr(message, name, value)
    return f"{name}: "


FULL_RANGE = {
    "meshplane.adapter.v1.StreamEventsRequest.after_sequence",  # a uint64 sequence
    "meshplane.coordinator.v1.WatchEventsRequest.after_cursor",  # a uint64 cursor
}


def top_level_fields() -> Iterator[tuple[Descriptor, FieldDescriptor]]:
    for request in request_types():
        for field in request.fields:
            if field.type in (FieldDescriptor.TYPE_BOOL, FieldDescriptor.TYPE_ENUM):
                continue
            if field.full_name in FULL_RANGE:
                continue
            if (
                field.message_type is not None
                and not field.is_repeated
                and (field.message_type.full_name != "google.protobuf.Duration")
            ):
                continue  # nested messages: their own fields are checked through the walk
            yield request, field


TOP_LEVEL = list(top_level_fields())


@pytest.mark.parametrize(
    ("request_type", "field"), TOP_LEVEL, ids=[field.full_name for _, field in TOP_LEVEL]
)
def test_a_value_over_its_bound_is_refused_naming_the_field(
    request_type: Descriptor, field: FieldDescriptor
) -> None:
    message = GetMessageClass(request_type)()
    expected = _over(message, field, BOUNDS_UNDER_TEST.bound(field))
    problem = BOUNDS_UNDER_TEST.violation(message)
    assert problem is not None and problem.startswith(expected), problem
    assert len(problem) < 300


def test_nested_paths_enums_and_timestamps() -> None:
    request = coordinator_pb2.ApplyOperationRequest(
        mesh="istio",
        request=adapter_pb2.ApplyOperationRequest(
            clusters=[adapter_pb2.Cluster(name="a"), adapter_pb2.Cluster(name="b" * 254)]
        ),
    )
    assert BOUNDS_UNDER_TEST.violation(request) == (
        "request.clusters[1].name: 254 bytes; at most 253 are accepted"
    )
    watch = coordinator_pb2.WatchEventsRequest(min_severity=77)  # type: ignore[arg-type]
    assert "min_severity: 77 is not a value of EventSeverity" in str(
        BOUNDS_UNDER_TEST.violation(watch)
    )
    history = coordinator_pb2.ListOperationHistoryRequest()
    history.start_time.seconds = 10**15
    assert "start_time: seconds=1000000000000000" in str(BOUNDS_UNDER_TEST.violation(history))
    perf = perf_pb2.RunPerformanceTestRequest(
        config=perf_pb2.PerformanceTestConfig(
            clients=[perf_pb2.PerformanceTestClient(rps=float("nan"))]
        )
    )
    assert BOUNDS_UNDER_TEST.violation(perf) == "config.clients[0].rps: nan is not a finite number"
    huge_key = adapter_pb2.ApplyOperationRequest(parameters={"k" * 10_000: "v"})
    problem = str(BOUNDS_UNDER_TEST.violation(huge_key))
    assert problem.startswith("parameters: key 'kkkk") and len(problem) < 200


def test_text_is_measured_in_utf8_bytes() -> None:
    fits = adapter_pb2.ApplyOperationRequest(username="é" * 126)  # 252 bytes
    assert BOUNDS_UNDER_TEST.violation(fits) is None
    over = adapter_pb2.ApplyOperationRequest(username="é" * 127)
    assert BOUNDS_UNDER_TEST.violation(over) == "username: 254 bytes; at most 253 are accepted"


@pytest.mark.parametrize(
    "text", ["²", "--5", "9" * 4301, "\u0665", " 5", "5 ", "1_0", "+5", "-0", "", "0x10", "5.0"]
)
def test_strict_integers_refuse_what_int_would_mangle(text: str) -> None:
    with pytest.raises(NumberError) as raised:
        parse_integer(text, minimum=0, maximum=600_000)
    message = str(raised.value)
    assert "give a whole number from 0 to 600000" in message
    assert len(message) < 200


def test_strict_integers_accept_plain_digits_in_range() -> None:
    assert parse_integer("7000", minimum=0, maximum=600_000) == 7000
    assert parse_integer("007", minimum=0, maximum=10) == 7
    assert parse_integer("-5", minimum=-10, maximum=10) == -5
    with pytest.raises(NumberError, match="out of range"):
        parse_integer("600001", minimum=0, maximum=600_000)


def test_quoting_cuts_long_input() -> None:
    assert quoted("abc") == "'abc'"
    long = quoted("x" * 5_000_000)
    assert len(long) < 240 and long.endswith("... (5000000 characters)")


def test_the_shared_limits_are_the_checks_own() -> None:
    from adapters.kit.model import custom_bodies, request_kubeconfigs
    from serving import request_bounds

    assert request_kubeconfigs.KUBECONFIG_MAX_BYTES == request_bounds.KUBECONFIG_MAX_BYTES
    assert custom_bodies.CUSTOM_MAX_BYTES == request_bounds.CUSTOM_BODY_MAX_BYTES
