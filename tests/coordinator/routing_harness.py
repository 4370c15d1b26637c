"""Fakes and helpers for coordinator tests: a scriptable adapter and an in-process coordinator.

`FakeAdapter` is a real `MeshAdapterService` servicer served by `serving.GrpcServer` (so it has
the real health service the coordinator watches). Tests script it (delays, UNAVAILABLE answers)
and read what it received, instead of patching the coordinator's internals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from coordinator.server.assembly import Coordinator, build_coordinator
from coordinator.server.settings import CoordinatorSettings, StaticAdapter
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving import GrpcServer, ServerConfig, TlsConfig
from tests.coordinator.identities import ADMIN, Caller, channel_as, write_token_file

ADAPTER_SERVICE = "meshplane.adapter.v1.MeshAdapterService"


@dataclass(kw_only=True)
class Received:
    """One call a fake adapter answered (or refused)."""

    method: str
    request: Any
    metadata: dict[str, str]


class FakeAdapter(apb_grpc.MeshAdapterServiceServicer):
    """An adapter whose answers tests script; it records every call it receives."""

    def __init__(self, mesh: str, name: str) -> None:
        self.mesh = mesh
        self.name = name
        self.received: list[Received] = []
        self.unavailable_applies = 0
        """ApplyOperation calls still to refuse with UNAVAILABLE (after recording them)."""
        self.delay = 0.0
        """Seconds ListMeshVersions and GetMeshStatus wait before answering."""
        self.applies_held: asyncio.Event | None = None
        """While set to an unset event, ApplyOperation records the call and answers only once
        it is set (an answer that is slow to come)."""
        self.oversized_answers = False
        """ApplyOperation records the operation, then answers with more than a coordinator
        reads from an adapter (its error detail padded to 5 MB): the answer is lost."""
        self.events = 3
        """How many numbered events the stream starts with."""
        self.operations: dict[str, apb.Operation] = {}
        self.operation_events: list[apb.Event] = []
        """Events about operations (a cancellation ends one), after the numbered ones."""
        self._new_event = asyncio.Condition()
        self.catalogue = [
            apb.OperationDescriptor(
                id="install",
                category=apb.OPERATION_CATEGORY_INSTALL,
                description=f"install {mesh}",
            )
        ]
        """What ListOperations answers (read by the coordinator when it registers the fake)."""

    def _record(self, method: str, request: Any, context: Any) -> None:
        metadata = {k: str(v) for k, v in context.invocation_metadata() or ()}
        self.received.append(Received(method=method, request=request, metadata=metadata))

    def calls(self, method: str) -> list[Any]:
        """Requests received for ``method``, in order."""
        return [r.request for r in self.received if r.method == method]

    async def GetInfo(self, request: Any, context: Any) -> apb.GetInfoResponse:
        self._record("GetInfo", request, context)
        return apb.GetInfoResponse(
            mesh=self.mesh,
            adapter_version=f"1.0.0+{self.name}",
            contract_version="v1",
            event_stream_id=f"stream-{self.name}",
            capabilities=["cancel"],
        )

    async def ListOperations(self, request: Any, context: Any) -> apb.ListOperationsResponse:
        self._record("ListOperations", request, context)
        return apb.ListOperationsResponse(operations=self.catalogue)

    async def ListMeshVersions(self, request: Any, context: Any) -> apb.ListMeshVersionsResponse:
        self._record("ListMeshVersions", request, context)
        await asyncio.sleep(self.delay)
        return apb.ListMeshVersionsResponse(
            versions=[apb.MeshVersion(version="1.2.3")], default_version="1.2.3"
        )

    async def ApplyOperation(self, request: Any, context: Any) -> apb.ApplyOperationResponse:
        self._record("ApplyOperation", request, context)
        if self.applies_held is not None:
            await self.applies_held.wait()
        if self.unavailable_applies > 0:
            self.unavailable_applies -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self.name} is overloaded")
        if request.operation == "bad":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such parameter")
        created = request.operation_id not in self.operations
        if created:
            stamp = Timestamp()
            stamp.GetCurrentTime()
            self.operations[request.operation_id] = apb.Operation(
                operation_id=request.operation_id,
                operation=request.operation,
                mesh=self.mesh,
                username=request.username,
                state=apb.OPERATION_STATE_PENDING,
                create_time=stamp,
                clusters=["default"],
                attempt=1,
            )
        answer = apb.ApplyOperationResponse(
            operation_id=request.operation_id,
            operation=self.operations[request.operation_id],
            created=created,
        )
        if self.oversized_answers:
            answer.operation.error.message = "x" * (5 * 1024 * 1024)
        return answer

    async def GetOperation(self, request: Any, context: Any) -> apb.GetOperationResponse:
        self._record("GetOperation", request, context)
        found = self.operations.get(request.operation_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown {request.operation_id}")
        return apb.GetOperationResponse(operation=found)

    async def CancelOperation(self, request: Any, context: Any) -> apb.CancelOperationResponse:
        self._record("CancelOperation", request, context)
        found = self.operations.get(request.operation_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown {request.operation_id}")
        assert found is not None
        found.state = apb.OPERATION_STATE_CANCELLED
        async with self._new_event:
            self.operation_events.append(
                apb.Event(
                    sequence=self.events + len(self.operation_events) + 1,
                    mesh=self.mesh,
                    operation_id=found.operation_id,
                    operation_state=apb.OPERATION_STATE_CANCELLED,
                    summary=f"operation {found.operation_id} cancelled",
                    event_stream_id=f"stream-{self.name}",
                )
            )
            self._new_event.notify_all()
        return apb.CancelOperationResponse(operation=found)

    async def StreamEvents(self, request: Any, context: Any) -> AsyncIterator[Any]:
        self._record("StreamEvents", request, context)
        for sequence in range(request.after_sequence + 1, self.events + 1):
            yield apb.StreamEventsResponse(
                event=apb.Event(
                    sequence=sequence,
                    mesh=self.mesh,
                    summary=f"{self.name} event {sequence}",
                    event_stream_id=f"stream-{self.name}",
                )
            )
        sent = 0
        while True:  # follow "live" until the client cancels
            async with self._new_event:
                while len(self.operation_events) <= sent:
                    await self._new_event.wait()
                fresh = self.operation_events[sent:]
            sent += len(fresh)
            for event in fresh:
                if event.sequence > request.after_sequence:
                    yield apb.StreamEventsResponse(event=event)

    async def GetMeshStatus(self, request: Any, context: Any) -> apb.GetMeshStatusResponse:
        self._record("GetMeshStatus", request, context)
        await asyncio.sleep(self.delay)
        return apb.GetMeshStatusResponse(installed=True, version="1.2.3", cluster=self.name)


@dataclass(kw_only=True)
class RunningFake:
    """A fake adapter and the server it runs on."""

    fake: FakeAdapter
    server: GrpcServer

    @property
    def address(self) -> str:
        return self.server.address

    async def set_serving(self, serving: bool) -> None:
        """Flip the adapter service's health (what the coordinator watches)."""
        await self.server.set_serving(ADAPTER_SERVICE, serving)


async def start_fake(
    mesh: str = "toy",
    name: str = "a",
    *,
    tls: TlsConfig | None = None,
    port: int = 0,
    interceptors: tuple[Any, ...] = (),
) -> RunningFake:
    """Serve a `FakeAdapter` on 127.0.0.1 (``port`` 0: any free port)."""
    fake = FakeAdapter(mesh, name)
    server = GrpcServer(
        ServerConfig(host="127.0.0.1", port=port, grace_seconds=0, tls=tls),
        interceptors=interceptors,
    )
    server.add_service(apb_grpc.add_MeshAdapterServiceServicer_to_server, fake, ADAPTER_SERVICE)
    await server.start()
    return RunningFake(fake=fake, server=server)


@contextlib.asynccontextmanager
async def fakes(*specs: tuple[str, str]) -> AsyncIterator[list[RunningFake]]:
    """Several fake adapters ``(mesh, name)``, all stopped afterwards."""
    started: list[RunningFake] = []
    try:
        for mesh, name in specs:
            started.append(await start_fake(mesh, name))
        yield started
    finally:
        for running in started:
            await running.server.stop(grace_seconds=0)


def make_settings(tmp_path: Path, **changes: Any) -> CoordinatorSettings:
    """Loopback, port 0, fast health backoff, a store and a token file (``identities``) in
    ``tmp_path``."""
    base = CoordinatorSettings(
        host="127.0.0.1",
        port=0,
        data_dir=tmp_path,
        store=str(tmp_path / "coordinator.db"),
        token_auth_file=write_token_file(tmp_path / "auth"),
        call_timeout_seconds=5.0,
        health_backoff_initial_seconds=0.05,
        health_backoff_max_seconds=0.3,
        shutdown_grace_seconds=0.5,
    )
    return replace(base, **changes)


def static(*running: RunningFake) -> tuple[StaticAdapter, ...]:
    """Static adapter entries for running fakes."""
    return tuple(StaticAdapter(mesh=r.fake.mesh, address=r.address) for r in running)


@dataclass(kw_only=True)
class Client:
    """A started coordinator and client stubs for both of its services."""

    coordinator: Coordinator
    channel: Any
    stub: cpb_grpc.CoordinatorServiceStub
    adapter_stub: apb_grpc.MeshAdapterServiceStub

    async def replica(self, address: str) -> cpb.AdapterReplica | None:
        """The replica as ListAdapters shows it."""
        listed = await self.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        for adapter in listed.adapters:
            for replica in adapter.replicas:
                if replica.address == address:
                    found: cpb.AdapterReplica = replica
                    return found
        return None

    async def wait_replica(
        self,
        address: str,
        predicate: Callable[[cpb.AdapterReplica | None], bool],
        within: float = 10.0,
    ) -> cpb.AdapterReplica | None:
        """Poll ListAdapters until ``predicate`` holds for the replica (None: absent)."""
        async with asyncio.timeout(within):
            while True:
                replica = await self.replica(address)
                if predicate(replica):
                    return replica
                await asyncio.sleep(0.02)

    async def wait_serving(self, *addresses: str, within: float = 10.0) -> None:
        """Until every address is SERVING."""
        for address in addresses:
            await self.wait_replica(
                address,
                lambda r: r is not None and r.state == cpb.REPLICA_STATE_SERVING,
                within=within,
            )


@contextlib.asynccontextmanager
async def coordinator(
    settings: CoordinatorSettings, caller: Caller | None = ADMIN
) -> AsyncIterator[Client]:
    """Build and start a coordinator in-process; connect a plaintext client calling as
    ``caller`` (the admin of ``identities``; None sends no credentials); stop both."""
    built = build_coordinator(settings)
    await built.start()
    channel = channel_as(built.address, caller)
    try:
        yield Client(
            coordinator=built,
            channel=channel,
            stub=cpb_grpc.CoordinatorServiceStub(channel),
            adapter_stub=apb_grpc.MeshAdapterServiceStub(channel),
        )
    finally:
        await channel.close()
        await built.stop(grace_seconds=0)


def code_of(error: BaseException) -> Any:
    """The gRPC status code of an AioRpcError."""
    assert isinstance(error, grpc.aio.AioRpcError), error
    return error.code()


@contextlib.asynccontextmanager
async def kubernetes_mode(
    tmp_path: Path, *, kubeconfig: Path, audience: str, cache_seconds: float
) -> AsyncIterator[tuple[Client, RunningFake]]:
    """A coordinator in Kubernetes mode only (TokenReview for ``audience``, SubjectAccessReview
    per call, no token file) through ``kubeconfig``, in front of a fake istio adapter offering
    the sample app ``bookinfo``; the client sends no credentials. Yields once the adapter is in
    rotation."""
    settings = replace(
        make_settings(tmp_path),
        token_auth_file=None,
        kubeconfig=kubeconfig,
        authn_kubernetes=True,
        authn_kubernetes_audiences=(audience,),
        authz_kubernetes=True,
        auth_cache_seconds=cache_seconds,
    )
    async with fakes(("istio", "a")) as (adapter,):
        adapter.fake.catalogue = [
            apb.OperationDescriptor(
                id="bookinfo", category=apb.OPERATION_CATEGORY_SAMPLE_APPLICATION
            )
        ]
        async with coordinator(replace(settings, adapters=static(adapter)), caller=None) as client:
            async with asyncio.timeout(30):  # in rotation (no caller here may list adapters)
                while True:
                    if client.coordinator.registry.healthy("istio"):
                        break
                    await asyncio.sleep(0.02)
            yield client, adapter
