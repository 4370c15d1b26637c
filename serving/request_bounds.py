"""Request bounds: a maximum for every string, bytes, list, map, number and duration of a request.

One table (`BOUNDS`, keyed by full protobuf field name) says what each field of
``meshplane.adapter.v1``, ``meshplane.coordinator.v1`` and ``meshplane.perf.v1`` requests may
hold; a field the table does not name gets the default for its type (`DEFAULTS`), so a field
added to a contract is bounded the day it is added. `RequestBounds.violation` walks any message
by its descriptor (nested messages, lists, maps) and returns the first value over its bound as a
message naming the field path and the limit. Servers apply it to every request before a handler
sees it (`serving.guarded_handlers`); the answer is INVALID_ARGUMENT.

These are shape limits, the same for every deployment. Limits an operator chooses (how many
connections a performance test may open, how long it may run) are checked by the service that
owns them, on top of these.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from serving.durations import format_duration
from serving.input_quoting import quoted

__all__ = [
    "BOUNDED_PACKAGES",
    "BOUNDS",
    "CUSTOM_BODY_MAX_BYTES",
    "DEFAULTS",
    "KUBECONFIG_MAX_BYTES",
    "MAX_CLUSTERS",
    "MAX_OPERATION_TIMEOUT_SECONDS",
    "FieldBound",
    "RequestBounds",
    "request_bounds",
]

BOUNDED_PACKAGES = (
    "meshplane.adapter.v1",
    "meshplane.coordinator.v1",
    "meshplane.perf.v1",
    "meshes",  # Meshery's MeshService, which every adapter also serves
)
"""The contracts whose requests the table covers (other messages get the defaults)."""

CUSTOM_BODY_MAX_BYTES = 1024 * 1024
"""Largest custom_body accepted: real manifests are kilobytes (the YAML loader enforces it too)."""
KUBECONFIG_MAX_BYTES = 256 * 1024
"""Largest request kubeconfig: the judge's limit (`adapters.kit.model.request_kubeconfigs`, kept
equal by a test: the kit module must not import `serving`)."""
MAX_CLUSTERS = 20
"""Clusters one operation may target; more is a fleet rollout, which is several operations."""
MAX_OPERATION_TIMEOUT_SECONDS = 2 * 3600.0
"""Longest ApplyOperationRequest.timeout: an install that needs longer is stuck, not slow."""

NAME_BYTES = 253
"""Names, ids and users: a DNS-1123 subdomain is at most 253 characters."""
OPERATION_ID_BYTES = 128
ADDRESS_BYTES = 300
TOKEN_BYTES = 1024
URL_BYTES = 2048
PERF_BODY_BYTES = 1024 * 1024
UINT64_MAX = 2**64 - 1

_TIMESTAMP_MIN_SECONDS = -62_135_596_800  # 0001-01-01T00:00:00Z
_TIMESTAMP_MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
_NANOS = 999_999_999
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.-]{1,63}")


@dataclass(frozen=True, kw_only=True)
class FieldBound:
    """The limits of one field; None means "the default for the field's type".

    ``max_bytes`` applies to a string or bytes value (each element of a list, each value of a
    map), ``max_items`` to a list or map, ``max_key_bytes`` to map keys, ``minimum`` and
    ``maximum`` to numbers (each element, each map value) and, in seconds, to Durations.
    """

    max_bytes: int | None = None
    max_items: int | None = None
    max_key_bytes: int | None = None
    minimum: float | None = None
    maximum: float | None = None

    def over(self, other: FieldBound) -> FieldBound:
        """This bound with its unset limits taken from ``other``."""
        return replace(
            other,
            **{
                f.name: getattr(self, f.name)
                for f in fields(self)
                if getattr(self, f.name) is not None
            },
        )


def _text(limit: int) -> FieldBound:
    return FieldBound(max_bytes=limit)


def _count(maximum: float, minimum: float = 0) -> FieldBound:
    return FieldBound(minimum=minimum, maximum=maximum)


def _map(entries: int, key: int, value: int) -> FieldBound:
    return FieldBound(max_items=entries, max_key_bytes=key, max_bytes=value)


_ADAPTER = "meshplane.adapter.v1."
_COORDINATOR = "meshplane.coordinator.v1."
_PERF = "meshplane.perf.v1."
_MESHERY = "meshes."

BOUNDS: Mapping[str, FieldBound] = {
    # meshplane.adapter.v1 (also inside coordinator requests)
    f"{_ADAPTER}Cluster.name": _text(NAME_BYTES),
    f"{_ADAPTER}Cluster.kubeconfig": _text(KUBECONFIG_MAX_BYTES),
    f"{_ADAPTER}Cluster.context": _text(NAME_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.operation": _text(NAME_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.mesh_version": _text(NAME_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.namespace": _text(63),
    f"{_ADAPTER}ApplyOperationRequest.custom_body": _text(CUSTOM_BODY_MAX_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.parameters": _map(64, 63, 4096),
    f"{_ADAPTER}ApplyOperationRequest.clusters": FieldBound(max_items=MAX_CLUSTERS),
    f"{_ADAPTER}ApplyOperationRequest.username": _text(NAME_BYTES),
    f"{_ADAPTER}ApplyOperationRequest.timeout": _count(MAX_OPERATION_TIMEOUT_SECONDS),
    f"{_ADAPTER}GetOperationRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_ADAPTER}CancelOperationRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_ADAPTER}StreamEventsRequest.after_sequence": _count(UINT64_MAX),
    f"{_ADAPTER}StreamEventsRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_ADAPTER}GetMeshStatusRequest.namespace": _text(63),
    f"{_ADAPTER}RenderOperationRequest.operation": _text(NAME_BYTES),
    f"{_ADAPTER}RenderOperationRequest.mesh_version": _text(NAME_BYTES),
    f"{_ADAPTER}RenderOperationRequest.namespace": _text(63),
    f"{_ADAPTER}RenderOperationRequest.parameters": _map(64, 63, 4096),
    f"{_ADAPTER}RenderOperationRequest.custom_body": _text(CUSTOM_BODY_MAX_BYTES),
    # meshplane.coordinator.v1
    f"{_COORDINATOR}RegisterAdapterRequest.address": _text(ADDRESS_BYTES),
    f"{_COORDINATOR}RegisterAdapterRequest.mesh": _text(63),
    f"{_COORDINATOR}DeregisterAdapterRequest.address": _text(ADDRESS_BYTES),
    f"{_COORDINATOR}ListOperationsRequest.mesh": _text(63),
    f"{_COORDINATOR}ListMeshVersionsRequest.mesh": _text(63),
    f"{_COORDINATOR}ApplyOperationRequest.mesh": _text(63),
    f"{_COORDINATOR}GetOperationRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_COORDINATOR}CancelOperationRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_COORDINATOR}ListOperationHistoryRequest.mesh": _text(63),
    f"{_COORDINATOR}ListOperationHistoryRequest.username": _text(NAME_BYTES),
    f"{_COORDINATOR}ListOperationHistoryRequest.operation": _text(NAME_BYTES),
    f"{_COORDINATOR}ListOperationHistoryRequest.page_size": _count(10_000),
    f"{_COORDINATOR}ListOperationHistoryRequest.page_token": _text(TOKEN_BYTES),
    f"{_COORDINATOR}WatchEventsRequest.mesh": _text(63),
    f"{_COORDINATOR}WatchEventsRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_COORDINATOR}WatchEventsRequest.after_cursor": _count(UINT64_MAX),
    f"{_COORDINATOR}GetMeshStatusRequest.mesh": _text(63),
    f"{_COORDINATOR}RenderOperationRequest.mesh": _text(63),
    # meshplane.perf.v1 (operators lower connections, duration and rate with coordinator flags)
    f"{_PERF}RunPerformanceTestRequest.mesh": _text(63),
    f"{_PERF}PerformanceTestConfig.id": _text(OPERATION_ID_BYTES),
    f"{_PERF}PerformanceTestConfig.name": _text(NAME_BYTES),
    f"{_PERF}PerformanceTestConfig.labels": _map(64, 63, NAME_BYTES),
    f"{_PERF}PerformanceTestConfig.duration": _count(24 * 3600.0),
    f"{_PERF}PerformanceTestConfig.clients": FieldBound(max_items=4),
    f"{_PERF}PerformanceTestConfig.request_count": _count(1_000_000_000),
    f"{_PERF}PerformanceTestClient.load_generator": _text(32),
    f"{_PERF}PerformanceTestClient.connections": _count(100_000),
    f"{_PERF}PerformanceTestClient.rps": _count(10_000_000.0),
    f"{_PERF}PerformanceTestClient.headers": _map(64, 256, 8192),
    f"{_PERF}PerformanceTestClient.cookies": _map(64, 256, 4096),
    f"{_PERF}PerformanceTestClient.body": _text(PERF_BODY_BYTES),
    f"{_PERF}PerformanceTestClient.content_type": _text(NAME_BYTES),
    f"{_PERF}PerformanceTestClient.endpoint_urls": FieldBound(max_items=16, max_bytes=URL_BYTES),
    f"{_PERF}PerformanceTestClient.grpc_method": _text(NAME_BYTES),
    f"{_PERF}PerformanceTestClient.http_method": _text(16),
    f"{_PERF}PerformanceTestClient.request_timeout": _count(300.0),
    f"{_PERF}ListPerformanceResultsRequest.labels": _map(64, 63, NAME_BYTES),
    f"{_PERF}ListPerformanceResultsRequest.test_id": _text(OPERATION_ID_BYTES),
    f"{_PERF}ListPerformanceResultsRequest.mesh_type": _text(63),
    f"{_PERF}ListPerformanceResultsRequest.page_size": _count(10_000),
    f"{_PERF}ListPerformanceResultsRequest.page_token": _text(TOKEN_BYTES),
    f"{_PERF}GetPerformanceResultRequest.id": _text(OPERATION_ID_BYTES),
    f"{_PERF}ComparePerformanceResultsRequest.ids": FieldBound(
        max_items=20, max_bytes=OPERATION_ID_BYTES
    ),
    # meshes (Meshery's adapter contract, served beside meshplane.adapter.v1)
    f"{_MESHERY}ApplyRuleRequest.opName": _text(NAME_BYTES),
    f"{_MESHERY}ApplyRuleRequest.namespace": _text(63),
    f"{_MESHERY}ApplyRuleRequest.username": _text(NAME_BYTES),
    f"{_MESHERY}ApplyRuleRequest.custom_body": _text(CUSTOM_BODY_MAX_BYTES),
    f"{_MESHERY}ApplyRuleRequest.operation_id": _text(OPERATION_ID_BYTES),
    f"{_MESHERY}ApplyRuleRequest.kube_configs": FieldBound(
        max_items=MAX_CLUSTERS, max_bytes=KUBECONFIG_MAX_BYTES
    ),
    f"{_MESHERY}ApplyRuleRequest.version": _text(NAME_BYTES),
    f"{_MESHERY}ProcessOAMRequest.username": _text(NAME_BYTES),
    f"{_MESHERY}ProcessOAMRequest.oam_comps": FieldBound(
        max_items=64, max_bytes=CUSTOM_BODY_MAX_BYTES
    ),
    f"{_MESHERY}ProcessOAMRequest.oam_config": _text(CUSTOM_BODY_MAX_BYTES),
    f"{_MESHERY}ProcessOAMRequest.kube_configs": FieldBound(
        max_items=MAX_CLUSTERS, max_bytes=KUBECONFIG_MAX_BYTES
    ),
}

_UNSIGNED = frozenset(
    {
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_SIGNED = frozenset(
    {
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
_FLOATS = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})
_TEXT = frozenset({FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES})
DURATION = "google.protobuf.Duration"
TIMESTAMP = "google.protobuf.Timestamp"


@dataclass(frozen=True, kw_only=True)
class Defaults:
    """What a field the table does not name may hold, by type."""

    text_bytes: int = 1024
    items: int = 100
    map_key_bytes: int = 253
    integer_maximum: float = 1_000_000
    signed_minimum: float = 0
    float_maximum: float = 1_000_000.0
    duration_seconds: float = 24 * 3600.0


DEFAULTS = Defaults()


def _type_default(field: FieldDescriptor) -> FieldBound:
    """The default bound of ``field`` (lists and maps also bound their elements)."""
    items = DEFAULTS.items if _is_repeated(field) else None
    kind = field
    if _is_map(field):
        kind = _message_type(field).fields_by_name["value"]
    if kind.type in _TEXT:
        bound = FieldBound(max_bytes=DEFAULTS.text_bytes)
    elif kind.type in _UNSIGNED or kind.type in _SIGNED:
        bound = FieldBound(minimum=DEFAULTS.signed_minimum, maximum=DEFAULTS.integer_maximum)
    elif kind.type in _FLOATS:
        bound = FieldBound(minimum=0.0, maximum=DEFAULTS.float_maximum)
    elif kind.type == FieldDescriptor.TYPE_MESSAGE and _message_type(kind).full_name == DURATION:
        bound = FieldBound(minimum=0.0, maximum=DEFAULTS.duration_seconds)
    else:  # bool, enum (defined values only), Timestamp (its valid range), other messages
        bound = FieldBound()
    if _is_map(field):
        return replace(bound, max_items=items, max_key_bytes=DEFAULTS.map_key_bytes)
    return replace(bound, max_items=items)


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _message_type(field: FieldDescriptor) -> Descriptor:
    message_type = field.message_type
    assert message_type is not None, field.full_name
    return message_type


def _is_map(field: FieldDescriptor) -> bool:
    return bool(
        _is_repeated(field)
        and field.type == FieldDescriptor.TYPE_MESSAGE
        and _message_type(field).GetOptions().map_entry
    )


def _over(value: str | bytes, limit: int) -> bool:
    """True when ``value`` is longer than ``limit`` bytes (UTF-8 encoded only when it matters)."""
    if isinstance(value, bytes) or len(value) > limit:
        return len(value) > limit
    return len(value) * 4 > limit and len(value.encode("utf-8", "surrogatepass")) > limit


def _size(value: str | bytes) -> int:
    return len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "surrogatepass"))


class RequestBounds:
    """Applies a bounds table to messages; effective bounds are computed once per field."""

    def __init__(self, table: Mapping[str, FieldBound] = BOUNDS) -> None:
        self._table = dict(table)
        self._effective: dict[str, FieldBound] = {}

    def bound(self, field: FieldDescriptor) -> FieldBound:
        """The effective bound of ``field``: its table entry over its type's default."""
        found = self._effective.get(field.full_name)
        if found is None:
            default = _type_default(field)
            entry = self._table.get(field.full_name)
            found = default if entry is None else entry.over(default)
            self._effective[field.full_name] = found
        return found

    def violation(self, message: Message) -> str | None:
        """The first value of ``message`` over its bound, as "path: what; limit", else None."""
        return self._message(message, "")

    def _message(self, message: Message, prefix: str) -> str | None:
        for field, value in message.ListFields():
            path = prefix + field.name
            bound = self.bound(field)
            if _is_repeated(field):
                if bound.max_items is not None and len(value) > bound.max_items:
                    noun = "entries" if _is_map(field) else "items"
                    return f"{path}: {len(value)} {noun}; at most {bound.max_items} are accepted"
                if _is_map(field):
                    problem = self._map(field, value, bound, path)
                else:
                    problem = self._elements(field, value, bound, path)
            else:
                problem = self._value(field, value, bound, path)
            if problem is not None:
                return problem
        return None

    def _elements(
        self, field: FieldDescriptor, values: Iterable[Any], bound: FieldBound, path: str
    ) -> str | None:
        for index, value in enumerate(values):
            problem = self._value(field, value, bound, f"{path}[{index}]")
            if problem is not None:
                return problem
        return None

    def _map(
        self, field: FieldDescriptor, entries: Mapping[Any, Any], bound: FieldBound, path: str
    ) -> str | None:
        key_field = _message_type(field).fields_by_name["key"]
        value_field = _message_type(field).fields_by_name["value"]
        key_limit = bound.max_key_bytes or DEFAULTS.map_key_bytes
        for key, value in entries.items():
            if isinstance(key, str | bytes) and _over(key, key_limit):
                return (
                    f"{path}: key {quoted(key, 40)} is {_size(key)} bytes; keys may "
                    f"have at most {key_limit}"
                )
            shown = (
                f"{path}.{key}"
                if isinstance(key, str) and _PLAIN_KEY.fullmatch(key)
                else f"{path}[{quoted(key, 40)}]"
            )
            if key_field.type not in _TEXT:
                problem = self._number(key, FieldBound(), shown, key_field)
                if problem is not None:
                    return problem
            problem = self._value(value_field, value, bound, shown)
            if problem is not None:
                return problem
        return None

    def _value(
        self, field: FieldDescriptor, value: Any, bound: FieldBound, path: str
    ) -> str | None:
        kind = field.type
        if kind in _TEXT:
            limit = bound.max_bytes if bound.max_bytes is not None else DEFAULTS.text_bytes
            if _over(value, limit):
                return f"{path}: {_size(value)} bytes; at most {limit} are accepted"
            return None
        if kind == FieldDescriptor.TYPE_MESSAGE:
            name = _message_type(field).full_name
            if name == DURATION:
                return _duration(value, bound, path)
            if name == TIMESTAMP:
                return _timestamp(value, path)
            return self._message(value, f"{path}.")
        if kind == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            assert enum is not None, field.full_name
            if enum.values_by_number.get(value) is None:
                known = ", ".join(v.name for v in enum.values[:8])
                return f"{path}: {value} is not a value of {enum.name} ({known})"
            return None
        return self._number(value, bound, path, field)

    @staticmethod
    def _number(value: Any, bound: FieldBound, path: str, field: FieldDescriptor) -> str | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return f"{path}: {value} is not a finite number"
        low, high = bound.minimum, bound.maximum
        if low is None or high is None:
            return None
        if not low <= value <= high:
            shown = f"{high:g}" if isinstance(high, float) else f"{high}"
            return f"{path}: {value} is out of range; give a number from {low:g} to {shown}"
        return None


def _duration(value: Any, bound: FieldBound, path: str) -> str | None:
    seconds, nanos = int(value.seconds), int(value.nanos)
    if abs(nanos) > _NANOS or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        return f"{path}: nanos {nanos} does not fit seconds {seconds} (not a valid Duration)"
    total = seconds + nanos / 1e9
    low = bound.minimum if bound.minimum is not None else 0.0
    high = bound.maximum if bound.maximum is not None else DEFAULTS.duration_seconds
    if not low <= total <= high:
        return (
            f"{path}: {total:g}s is out of range; give a duration from "
            f"{format_duration(low) if low else '0'} to {format_duration(high)}"
        )
    return None


def _timestamp(value: Any, path: str) -> str | None:
    seconds, nanos = int(value.seconds), int(value.nanos)
    if not _TIMESTAMP_MIN_SECONDS <= seconds <= _TIMESTAMP_MAX_SECONDS or not 0 <= nanos <= _NANOS:
        return (
            f"{path}: seconds={seconds} nanos={nanos} is not a valid Timestamp (years 1 to 9999, "
            "nanos 0 to 999999999)"
        )
    return None


request_bounds = RequestBounds()
"""The bounds every meshplane server applies."""
