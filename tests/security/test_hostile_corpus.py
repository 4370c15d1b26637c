"""A hostile corpus against every RPC of the adapter and the coordinator (incl. its passthrough
and performance RPCs), on real server processes.

Requests are generated from the protobuf descriptors by hypothesis (random, huge and unicode
strings, negative and huge numbers, unknown enum values, invalid Durations and Timestamps, long
lists and maps), plus the hand-picked values of issue 12, and sent over gRPC. For every answer:
never UNKNOWN or INTERNAL, a status message of at most ~1 KB. After each RPC's run: both servers
still SERVING on grpc.health.v1, and their audit logs (`serving.audit_log`) show no program
started and no file opened that the server had not opened before the corpus began, outside its
own state directories.

Bounded: ``EXAMPLES`` per unary RPC and ``STREAM_EXAMPLES`` per streaming RPC (well over 1,000
requests in all), a fixed derandomized seed, no example database, short call deadlines. Every
host a generated request names is loopback, a numeric form, or a name refused without DNS.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.meshery import meshops_pb2 as mpb
from meshplane.perf.v1 import perf_pb2 as ppb
from tests.security.servers import AuditedServer, Servers, running_servers

EXAMPLES = 36
STREAM_EXAMPLES = 12
SHORT = 1100  # ~1 KB: the guard caps status messages at 1,024 characters
FORBIDDEN = (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
MESH_KEY = "x-meshplane-mesh"

HUGE = ("h" * 300, "g" * 5000, "k" * (1024 * 1024 + 1), "u" * (5 * 1024 * 1024))
HOSTILE_TEXT = (
    "",
    " ",
    "²",
    "--5",
    "9" * 4301,
    "\u0665",
    "-1",
    "1e9",
    "0x10",
    "NaN",
    "../../etc/passwd",
    "/etc/shadow",
    "~/.kube/config",
    "$(id)",
    "`id`",
    "; rm -rf /",
    "%s%s%s%n",
    "{{ .Values }}",
    "${HOME}",
    "\x00\x01\x7f",
    "\u202e\u200b\ufeff",
    "😀" * 70,
    "kube-system",
    "default",
    "istio",
    "install",
    "bookinfo",
    "bookinfo-fault",
    "custom",
    "A" * 64,
    "a:b:c",
    "http://127.0.0.1:1/",
    "http://10.0.0.1:9/",
    "http://0x0a000001/",
    "http://metadata.google.internal/",
    "unix:/var/run/docker.sock",
    "127.0.0.1:1",
    "localhost:1",
    "&anchor [*anchor, *anchor]",
    "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b]\n",
    *HUGE,
)
HOSTILE_NUMBERS = (0, 1, -1, 25_000, 100_000, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63))

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT))


def scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text_values()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        return st.integers(min_value=-3, max_value=12)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == 2 else 64),
            st.sampled_from((0.0, -1.0, 1e6, 1e12, math.inf, -math.inf, math.nan)),
        )
    low, high = INT_RANGES[kind]
    return st.one_of(
        st.integers(min_value=low, max_value=high),
        st.sampled_from([n for n in HOSTILE_NUMBERS if low <= n <= high]),
    )


def element(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, depth + 1)
    return scalar(field)


def _fill_time(draw: st.DrawFn, message: Message) -> None:
    """A Duration or Timestamp: seconds and nanos from past either end of their ranges."""
    message.seconds = draw(  # type: ignore[attr-defined]
        st.one_of(
            st.integers(min_value=-(10**13), max_value=10**13),
            st.sampled_from((0, 1, -1, 600, 7201, 86_401, 10**12)),
        )
    )
    message.nanos = draw(  # type: ignore[attr-defined]
        st.integers(min_value=-(10**9) - 5, max_value=10**9 + 5) | st.sampled_from((0, 500_000_000))
    )


def _fill_map(draw: st.DrawFn, target: Any, entry: Descriptor, depth: int) -> None:
    """A few drawn keys, or (70, 1000 entries) many: the size is the attack."""
    key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
    size = draw(st.sampled_from((0, 1, 2, 3, 3, 70, 1000)))
    keys = draw(st.lists(scalar(key_field), min_size=min(size, 3), max_size=3))
    keys += [f"k{i}" for i in range(size - len(keys))] if size > 3 else []
    for key in keys:
        if value_field.type == FieldDescriptor.TYPE_MESSAGE:
            target[key].CopyFrom(draw(element(value_field, depth)))
        else:
            target[key] = draw(scalar(value_field))


def _fill_repeated(draw: st.DrawFn, target: Any, field: FieldDescriptor, depth: int) -> None:
    size = draw(st.sampled_from((0, 1, 2, 3, 25, 1000)))
    is_message = field.type == FieldDescriptor.TYPE_MESSAGE
    if size > 3:  # long lists of plain values: the size is the attack
        if is_message:
            for _ in range(size):
                target.add()
        else:
            target.extend([draw(element(field, depth))] * size)
        return
    for _ in range(size):
        value = draw(element(field, depth))
        target.add().CopyFrom(value) if is_message else target.append(value)


@st.composite
def _filled(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    message = GetMessageClass(descriptor)()
    if descriptor.full_name in ("google.protobuf.Duration", "google.protobuf.Timestamp"):
        _fill_time(draw, message)
        return message
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        target = getattr(message, field.name)
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            _fill_map(draw, target, entry, depth)
        elif field.is_repeated:
            _fill_repeated(draw, target, field, depth)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(draw(element(field, depth)))
        else:
            setattr(message, field.name, draw(scalar(field)))
    return message


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    if depth > 3:
        return st.just(GetMessageClass(descriptor)())
    return _filled(descriptor, depth)


# -- the RPCs and the hand-picked requests ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Rpc:
    """One method on one server: where, what it takes, how it answers."""

    server: str  # "adapter" or "coordinator"
    path: str
    request: Descriptor
    streaming: bool
    passthrough: bool

    @property
    def id(self) -> str:
        return ("passthrough:" if self.passthrough else f"{self.server}:") + self.path


def all_rpcs() -> list[Rpc]:
    found = []
    for server, module, passthrough in (
        ("adapter", apb, False),
        ("adapter", mpb, False),
        ("coordinator", cpb, False),
        ("coordinator", apb, True),
    ):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append(
                    Rpc(
                        server=server,
                        path=f"/{service.full_name}/{method.name}",
                        request=method.input_type,
                        streaming=method.server_streaming,
                        passthrough=passthrough,
                    )
                )
    return found


RPCS = all_rpcs()


def _perf(url: str, **client: Any) -> ppb.RunPerformanceTestRequest:
    config = ppb.PerformanceTestConfig(
        clients=[
            ppb.PerformanceTestClient(
                protocol=client.pop("protocol", ppb.PROTOCOL_HTTP),
                endpoint_urls=[url],
                connections=client.pop("connections", 2),
                **client,
            )
        ]
    )
    config.duration.seconds = 600
    return ppb.RunPerformanceTestRequest(config=config)


def _apply(**fields: Any) -> apb.ApplyOperationRequest:
    return apb.ApplyOperationRequest(**fields)


_EXEC_KUBECONFIG = """
apiVersion: v1
kind: Config
current-context: x
contexts: [{name: x, context: {cluster: x, user: x}}]
clusters: [{name: x, cluster: {server: "http://127.0.0.1:1"}}]
users: [{name: x, user: {tokenFile: /etc/hostname}}]
"""

HAND_PICKED_APPLY = (
    _apply(operation="bookinfo", username="u" * (5 * 1024 * 1024)),
    _apply(operation="bookinfo-fault", parameters={"delay-ms": "²"}),
    _apply(operation="bookinfo-fault", parameters={"delay-ms": "--5"}),
    _apply(operation="bookinfo-fault", parameters={"delay-ms": "9" * 4301}),
    _apply(operation="bookinfo", clusters=[apb.Cluster(name=f"c{i}") for i in range(1000)]),
    _apply(operation="install", parameters={"profile": "p" * 4000}),
    _apply(operation="custom", custom_body=HOSTILE_TEXT[-5]),
    _apply(operation="custom", custom_body="x: " + "y" * (2 * 1024 * 1024)),
    _apply(operation="bookinfo", clusters=[apb.Cluster(name="a", kubeconfig=_EXEC_KUBECONFIG)]),
)
HAND_PICKED: dict[str, tuple[Message, ...]] = {
    "ApplyOperation": HAND_PICKED_APPLY,
    "GetOperation": (apb.GetOperationRequest(operation_id="o" * (10 * 1024 * 1024)),),
    "CancelOperation": (apb.CancelOperationRequest(operation_id="o" * (10 * 1024 * 1024)),),
    "RunPerformanceTest": (
        _perf("http://127.0.0.1:1/", connections=25_000),
        _perf("http://127.0.0.1:1/", connections=100_000),
        _perf("http://10.0.0.1:9/"),
        _perf("http://0x0a000001:9/"),
        _perf("http://metadata.google.internal/"),
        _perf("unix:/var/run/docker.sock", protocol=ppb.PROTOCOL_GRPC, grpc_method="a.B/C"),
        _perf("http://127.0.0.1:1/", load_generator="wrk"),
        _perf("http://127.0.0.1:1/", body="b" * (2 * 1024 * 1024)),
    ),
    "WatchEvents": (cpb.WatchEventsRequest(after_cursor=2**64 - 1, min_severity=99),),  # type: ignore[arg-type]
    "ComparePerformanceResults": (ppb.ComparePerformanceResultsRequest(ids=["x"] * 1000),),
    "RegisterAdapter": (
        cpb.RegisterAdapterRequest(address="10.0.0.1:80"),
        cpb.RegisterAdapterRequest(address="0x0a000001:80"),
        cpb.RegisterAdapterRequest(address="a" * 100_000),
    ),
}


def hand_picked(rpc: Rpc) -> tuple[Message, ...]:
    name = rpc.path.rsplit("/", 1)[-1]
    picked = HAND_PICKED.get(name, ())
    wrapped: list[Message] = []
    for message in picked:
        if message.DESCRIPTOR.full_name == rpc.request.full_name:
            wrapped.append(message)
        elif rpc.request.full_name == "meshplane.coordinator.v1.ApplyOperationRequest":
            assert isinstance(message, apb.ApplyOperationRequest)
            wrapped.append(cpb.ApplyOperationRequest(mesh="istio", request=message))
        elif rpc.request.full_name == "meshplane.coordinator.v1.GetOperationRequest":
            wrapped.append(cpb.GetOperationRequest(operation_id="o" * (10 * 1024 * 1024)))
        elif rpc.request.full_name == "meshplane.coordinator.v1.CancelOperationRequest":
            wrapped.append(cpb.CancelOperationRequest(operation_id="o" * (10 * 1024 * 1024)))
    return tuple(wrapped)


# -- sending --------------------------------------------------------------------------------


class Sender:
    """Raw-bytes calls on both servers, with the passthrough's mesh metadata when needed."""

    def __init__(self, servers: Servers) -> None:
        self.channels = {
            "adapter": grpc.insecure_channel(servers.adapter.address),
            "coordinator": grpc.insecure_channel(servers.coordinator.address),
        }
        self.sent = 0

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()

    def send(
        self,
        rpc: Rpc,
        message: Message,
        metadata: tuple[tuple[str, str], ...],
        tail: bytes = b"",
    ) -> None:
        channel = self.channels[rpc.server]
        payload = message.SerializeToString() + tail
        self.sent += 1
        try:
            if rpc.streaming:
                call = channel.unary_stream(rpc.path)(payload, timeout=0.4, metadata=metadata)
                for count, _ in enumerate(call):
                    if count >= 3:
                        call.cancel()
                        break
            else:
                channel.unary_unary(rpc.path)(payload, timeout=10, metadata=metadata)
        except grpc.RpcError as error:
            code, details = error.code(), error.details() or ""  # type: ignore[attr-defined]
            assert code not in FORBIDDEN, f"{rpc.id}: {code.name} {details[:500]}"
            assert len(details) <= SHORT, f"{rpc.id}: {len(details)} characters: {details[:300]}"
            assert "Traceback" not in details, details[:500]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


UNKNOWN_FIELDS = (
    _varint(1000 << 3) + _varint(2**63),  # an unknown varint field
    _varint((1000 << 3) | 2) + _varint(5) + b"hello",  # an unknown length-delimited field
    _varint((2**29 - 1) << 3) + b"\x01",  # the highest field number
    _varint((1 << 3) | 2) + _varint(2**31),  # field 1 claiming 2 GiB
)


def tails() -> st.SearchStrategy[bytes]:
    """Bytes after the encoded message: nothing, unknown fields, or garbage."""
    return st.one_of(
        st.just(b""), st.just(b""), st.sampled_from(UNKNOWN_FIELDS), st.binary(max_size=24)
    )


def mesh_metadata() -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    return st.one_of(
        st.just(((MESH_KEY, "istio"),)),
        st.just(((MESH_KEY, "istio"),)),
        st.just(()),
        st.sampled_from(("linkerd", "ISTIO", " istio ", "x" * 200)).map(lambda m: ((MESH_KEY, m),)),
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp: Path = tmp_path_factory.mktemp("corpus")
    with running_servers(tmp) as running:
        warm_up(running)
        yield running


def warm_up(servers: Servers) -> None:
    """One ordinary request per RPC, then remember what the servers had opened by then."""
    sender = Sender(servers)
    try:
        for rpc in RPCS:
            metadata = ((MESH_KEY, "istio"),) if rpc.passthrough else ()
            sender.send(rpc, GetMessageClass(rpc.request)(), metadata)
        sender.send(
            next(r for r in RPCS if r.id == "adapter:/meshplane.adapter.v1.MeshAdapterService/"
                 "ApplyOperation"),
            apb.ApplyOperationRequest(operation="bookinfo", operation_id="warm-up"),
            (),
        )  # fmt: skip
    finally:
        sender.close()
    servers.adapter.take_baseline()
    servers.coordinator.take_baseline()


def check_servers(servers: Servers) -> None:
    for server in (servers.adapter, servers.coordinator):
        assert server.serving(), f"{server.name} is not SERVING after the corpus"
        assert_no_surprises(server)


def assert_no_surprises(server: AuditedServer) -> None:
    surprises = server.surprises()
    assert not surprises, f"{server.name} started programs or opened files: {surprises[:10]}"


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.id for rpc in RPCS])
def test_hostile_requests_get_clear_statuses_and_change_nothing(servers: Servers, rpc: Rpc) -> None:
    sender = Sender(servers)
    try:
        for message in hand_picked(rpc):
            sender.send(rpc, message, ((MESH_KEY, "istio"),) if rpc.passthrough else ())

        @settings(
            max_examples=STREAM_EXAMPLES if rpc.streaming else EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            message=messages(rpc.request),
            metadata=mesh_metadata() if rpc.passthrough else st.just(()),
            tail=tails(),
        )
        def run(message: Message, metadata: tuple[tuple[str, str], ...], tail: bytes) -> None:
            sender.send(rpc, message, metadata, tail)

        run()
        expected = STREAM_EXAMPLES if rpc.streaming else EXAMPLES
        assert sender.sent >= expected, f"only {sender.sent} requests were generated"
    finally:
        sender.close()
    check_servers(servers)
