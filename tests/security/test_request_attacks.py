"""The attacks of issue 12 item 4, each against real server processes: every one is refused at
once with a short INVALID_ARGUMENT (or RESOURCE_EXHAUSTED) naming the field and the limit."""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from adapters.kit.testing import MESHPLANE, AdapterProcess
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from meshplane.perf.v1 import perf_pb2 as ppb
from tests.security.servers import Servers, running_servers

MB5 = "u" * (5 * 1024 * 1024)
SHORT = 1024  # longest status message any refusal may carry


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with running_servers(tmp_path_factory.mktemp("attacks")) as running:
        yield running


def details(error: grpc.RpcError) -> str:
    """The status message without what the coordinator adds to an adapter's (``istio adapter:``,
    ``request.``), so the three paths can be compared."""
    text = str(error.details()).removeprefix("istio adapter: ")  # type: ignore[attr-defined]
    return text.removeprefix("request.")


def refusal(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error: Any = raised.value
    assert len(error.details() or "") <= SHORT, error.details()[:300]
    return error  # type: ignore[no-any-return]


def adapter_stub(servers: Servers) -> Iterator[apb_grpc.MeshAdapterServiceStub]:
    with grpc.insecure_channel(servers.adapter.address) as channel:
        yield apb_grpc.MeshAdapterServiceStub(channel)


class Clients:
    """Sync stubs: the adapter, the coordinator, and the coordinator's adapter passthrough."""

    def __init__(self, servers: Servers) -> None:
        self._channels = [
            grpc.insecure_channel(servers.adapter.address),
            grpc.insecure_channel(servers.coordinator.address),
        ]
        self.adapter = apb_grpc.MeshAdapterServiceStub(self._channels[0])
        self.coordinator = cpb_grpc.CoordinatorServiceStub(self._channels[1])
        self.passthrough = apb_grpc.MeshAdapterServiceStub(self._channels[1])

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


@pytest.fixture
def clients(servers: Servers) -> Iterator[Clients]:
    made = Clients(servers)
    yield made
    made.close()


ISTIO = (("x-meshplane-mesh", "istio"),)


def apply_everywhere(clients: Clients, request: apb.ApplyOperationRequest) -> list[grpc.RpcError]:
    """The same ApplyOperation to the adapter, through the coordinator and the passthrough."""
    return [
        refusal(lambda: clients.adapter.ApplyOperation(request, timeout=30)),
        refusal(
            lambda: clients.coordinator.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="istio", request=request), timeout=30
            )
        ),
        refusal(lambda: clients.passthrough.ApplyOperation(request, timeout=30, metadata=ISTIO)),
    ]


def test_a_5_mb_username_is_refused_naming_the_field(clients: Clients) -> None:
    request = apb.ApplyOperationRequest(operation="bookinfo", username=MB5)
    for error in apply_everywhere(clients, request):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).startswith("username: 5242880 bytes; at most 253"), details(error)
    history = clients.coordinator.ListOperationHistory(
        cpb.ListOperationHistoryRequest(mesh="istio"), timeout=10
    )
    assert all(len(record.operation.username) <= 253 for record in history.operations)


@pytest.mark.parametrize("value", ["²", "--5", "9" * 4301, "\u0665", " 7", "1_000"])
def test_delay_ms_that_int_would_mangle_is_invalid_argument(clients: Clients, value: str) -> None:
    request = apb.ApplyOperationRequest(operation="bookinfo-fault", parameters={"delay-ms": value})
    for error in apply_everywhere(clients, request):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, details(error)
        assert details(error).startswith("parameters.delay-ms: "), details(error)
        if len(value) > 4096:  # over the parameter size bound: refused before it is parsed
            assert "4301 bytes; at most 4096 are accepted" in details(error)
        else:
            assert "give a whole number from 0 to 600000" in details(error)


def test_errors_quote_at_most_200_characters_of_input(clients: Clients) -> None:
    profile = "p" * 4000  # within the parameter bound, but no echo should carry all of it
    request = apb.ApplyOperationRequest(operation="install", parameters={"profile": profile})
    for error in apply_everywhere(clients, request):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'" + "p" * 200 + "'... (4000 characters)" in error.details()
        assert "p" * 201 not in error.details()
    huge_id = "o" * (10 * 1024 * 1024)
    for call in (
        lambda: clients.adapter.GetOperation(apb.GetOperationRequest(operation_id=huge_id)),
        lambda: clients.coordinator.GetOperation(cpb.GetOperationRequest(operation_id=huge_id)),
        lambda: clients.passthrough.CancelOperation(
            apb.CancelOperationRequest(operation_id=huge_id), metadata=ISTIO
        ),
    ):
        error = refusal(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()[:300]
        assert error.details().startswith("operation_id: 10485760 bytes; at most 128")


def test_a_1000_cluster_request_is_refused(clients: Clients) -> None:
    clusters = [apb.Cluster(name=f"c{i}") for i in range(1000)]
    request = apb.ApplyOperationRequest(operation="bookinfo", clusters=clusters)
    for error in apply_everywhere(clients, request):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error) == "clusters: 1000 items; at most 20 are accepted"


def test_an_operation_timeout_beyond_two_hours_is_refused(clients: Clients) -> None:
    request = apb.ApplyOperationRequest(
        operation="bookinfo", timeout=duration_pb2.Duration(seconds=100 * 3600)
    )
    for error in apply_everywhere(clients, request):
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(error).startswith("timeout: 360000s is out of range"), details(error)


def test_bytes_that_are_no_request_are_invalid_argument(clients: Clients, servers: Servers) -> None:
    garbage = b"\xff\xff\xff\xff\x0f" * 3
    for address, metadata in ((servers.adapter.address, ()), (servers.coordinator.address, ISTIO)):
        with grpc.insecure_channel(address) as channel:
            call = channel.unary_unary("/meshplane.adapter.v1.MeshAdapterService/ApplyOperation")
            error = refusal(lambda call=call, metadata=metadata: call(garbage, metadata=metadata))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert "not a valid ApplyOperation request message" in error.details()


# -- performance tests --------------------------------------------------------------------


def perf_request(
    url: str, *, connections: int = 2, seconds: float = 1.0, **client: Any
) -> ppb.RunPerformanceTestRequest:
    config = ppb.PerformanceTestConfig(
        name="attack",
        clients=[
            ppb.PerformanceTestClient(
                protocol=client.pop("protocol", ppb.PROTOCOL_HTTP),
                endpoint_urls=[url],
                connections=connections,
                **client,
            )
        ],
    )
    config.duration.FromNanoseconds(int(seconds * 1e9))
    return ppb.RunPerformanceTestRequest(config=config)


def run_refused(clients: Clients, request: ppb.RunPerformanceTestRequest) -> grpc.RpcError:
    return refusal(lambda: list(clients.coordinator.RunPerformanceTest(request, timeout=30)))


def test_25k_connections_are_refused_before_any_connection(
    clients: Clients, servers: Servers
) -> None:
    error = run_refused(clients, perf_request(servers.perf_target.url(), connections=25_000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        "config.clients[0].connections: 25000 is over this coordinator's limit of 1000 "
        "(--perf-max-connections)"
    )
    error = run_refused(clients, perf_request(servers.perf_target.url(), seconds=3600))
    assert "config.duration: 1h is over this coordinator's limit of 10m" in error.details()


@pytest.mark.parametrize(
    ("url", "grpc_target", "shown"),
    [
        ("http://10.0.0.1:9/", False, "'10.0.0.1'"),
        ("http://0x0a000001:9/", False, "'0x0a000001 (that is 10.0.0.1)'"),
        ("http://169.254.169.254/latest/meta-data", False, "'169.254.169.254'"),
        ("http://metadata.google.internal/", False, "host 'metadata.google.internal'"),
        ("unix:/var/run/docker.sock:0", True, "host 'unix:/var/run/docker.sock'"),
        ("[::ffff:10.0.0.1]:80", True, "'[::ffff:10.0.0.1] (that is 10.0.0.1)'"),
    ],
)
def test_targets_outside_the_allow_list_are_refused_without_connecting(
    clients: Clients, url: str, grpc_target: bool, shown: str
) -> None:
    extra: dict[str, Any] = (
        {"protocol": ppb.PROTOCOL_GRPC, "grpc_method": "grpc.health.v1.Health/Check"}
        if grpc_target
        else {}
    )
    error = run_refused(clients, perf_request(url, **extra))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith(f"config.clients[0].endpoint_urls[0]: {shown}"), (
        error.details()
    )
    assert "(--perf-allowed-targets)" in error.details()


def start_coordinator(tmp_path: Path, *args: str) -> AdapterProcess:
    return AdapterProcess(
        ["--port", "0", "--data-dir", str(tmp_path / "data"), "--allow-anonymous", *args],
        tmp_path / "coordinator.log",
        command=[str(MESHPLANE), "coordinator"],
    ).start()


def test_an_operator_list_without_loopback_refuses_a_loopback_server(
    tmp_path: Path, servers: Servers
) -> None:
    process = start_coordinator(tmp_path, "--perf-allowed-targets", "*.svc,*.svc.cluster.local")
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            request = perf_request(servers.perf_target.url("/"))
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.RunPerformanceTest(request, timeout=30))
        error: Any = raised.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith(
            "config.clients[0].endpoint_urls[0]: '127.0.0.1' is not an allowed performance-test "
            "target; this coordinator sends load only to *.svc, *.svc.cluster.local"
        )
    finally:
        process.stop()


def test_a_test_beyond_the_concurrent_limit_is_resource_exhausted(
    tmp_path: Path, servers: Servers
) -> None:
    process = start_coordinator(tmp_path, "--perf-max-concurrent-tests", "1")
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            first = stub.RunPerformanceTest(
                perf_request(servers.perf_target.url(), rps=50, seconds=120), timeout=120
            )
            assert next(first).HasField("progress")  # running now
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.RunPerformanceTest(perf_request(servers.perf_target.url()), timeout=30))
            first.cancel()
        error: Any = raised.value
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "(--perf-max-concurrent-tests=1)" in error.details()
    finally:
        process.stop()


def test_sigterm_stops_a_running_test_within_the_grace_period(
    tmp_path: Path, servers: Servers
) -> None:
    grace = 30
    process = start_coordinator(tmp_path, "--shutdown-grace", str(grace))
    outcome: list[Any] = []
    try:
        with grpc.insecure_channel(process.address) as channel:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            stream = stub.RunPerformanceTest(
                perf_request(servers.perf_target.url(), connections=50, seconds=600), timeout=120
            )
            assert next(stream).HasField("progress")

            def drain() -> None:
                try:
                    outcome.extend(stream)
                except grpc.RpcError as exc:
                    outcome.append(exc)

            reader = threading.Thread(target=drain)
            reader.start()
            assert process.process is not None
            process.process.send_signal(signal.SIGTERM)
            # exits well before in-flight calls would have been cut at the end of the grace
            process.process.wait(timeout=grace - 10)
            reader.join(timeout=10)
        error = outcome[-1]
        assert isinstance(error, grpc.RpcError)
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()  # type: ignore[attr-defined]
        assert "shutting down" in error.details()  # type: ignore[attr-defined]
        assert process.process.returncode == 0
    except subprocess.TimeoutExpired:
        pytest.fail(f"the coordinator did not exit within {grace - 10}s of SIGTERM")
    finally:
        process.stop()
