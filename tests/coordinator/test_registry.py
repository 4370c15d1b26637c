"""The registry: static, dynamic and health-driven membership, through the real gRPC API."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest

from coordinator.server.registry import Registry
from coordinator.server.replicas import RegistrationError, RegistryChange, ReplicaState, Source
from coordinator.server.settings import (
    ADAPTERS_ENV,
    SettingsError,
    StaticAdapter,
    add_arguments,
    settings_from_args,
)
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from serving.tls import dial
from tests.coordinator.routing_harness import (
    code_of,
    coordinator,
    fakes,
    make_settings,
    start_fake,
    static,
)


def _parse(argv: list[str], env: dict[str, str]) -> object:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args(argv), env)


def test_static_adapters_come_from_flags_and_environment() -> None:
    settings = _parse(
        ["--adapter", "istio=127.0.0.1:10000", "--adapter", "Linkerd=127.0.0.1:10001"],
        {
            ADAPTERS_ENV: "consul=127.0.0.1:10002, istio=127.0.0.1:10003",
            "MESHPLANE_COORDINATOR_PORT": "0",
            "MESHPLANE_COORDINATOR_ALLOW_ANONYMOUS": "true",
        },
    )
    assert settings.adapters == (  # type: ignore[attr-defined]
        StaticAdapter(mesh="istio", address="127.0.0.1:10000"),
        StaticAdapter(mesh="linkerd", address="127.0.0.1:10001"),
        StaticAdapter(mesh="consul", address="127.0.0.1:10002"),
        StaticAdapter(mesh="istio", address="127.0.0.1:10003"),
    )
    assert settings.port == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--adapter", "istio"], {}, "MESH=HOST:PORT"),
        (["--adapter", "istio=host"], {}, "HOST:PORT"),
        ([], {ADAPTERS_ENV: "istio=h:1,linkerd=h:1"}, "two meshes"),
        (["--port", "70000"], {}, "--port"),
        ([], {"MESHPLANE_COORDINATOR_CALL_TIMEOUT": "-1"}, "MESHPLANE_COORDINATOR_CALL_TIMEOUT"),
        (["--tls-client-ca", "ca.pem"], {}, "--tls-client-ca needs"),
    ],
)
def test_bad_settings_name_their_source(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        _parse(argv, env)


async def test_static_replicas_are_listed_with_identity_and_catalogue(tmp_path: Path) -> None:
    async with fakes(("istio", "i1"), ("linkerd", "l1")) as (istio, linkerd):
        settings = make_settings(tmp_path, adapters=static(istio, linkerd))
        async with coordinator(settings) as client:
            await client.wait_serving(istio.address, linkerd.address)
            listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest())
            assert [a.mesh for a in listed.adapters] == ["istio", "linkerd"]
            replica = listed.adapters[0].replicas[0]
            assert replica.address == istio.address
            assert replica.source == cpb.REGISTRATION_SOURCE_STATIC
            assert replica.adapter_version == "1.0.0+i1"
            assert replica.event_stream_id == "stream-i1"
            assert replica.last_error == ""
            assert replica.state_change_time.seconds > 0
            assert listed.adapters[0].contract_version == "v1"
            catalogue = await client.stub.ListOperations(cpb.ListOperationsRequest(mesh="linkerd"))
            assert [(c.mesh, [o.id for o in c.operations]) for c in catalogue.catalogues] == [
                ("linkerd", ["install"])
            ]
            everything = await client.stub.ListOperations(cpb.ListOperationsRequest())
            assert [c.mesh for c in everything.catalogues] == ["istio", "linkerd"]


async def test_unreachable_static_replica_shows_why(tmp_path: Path) -> None:
    async with fakes(("istio", "gone")) as (gone,):
        address = gone.address
        await gone.server.stop(grace_seconds=0)
        async with coordinator(make_settings(tmp_path, adapters=static(gone))) as client:
            replica = await client.wait_replica(
                address, lambda r: r is not None and r.state == cpb.REPLICA_STATE_NOT_SERVING
            )
            assert replica is not None
            assert "UNAVAILABLE" in replica.last_error


async def test_register_and_deregister(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "s"), ("istio", "d")) as (fixed, dynamic),
        coordinator(make_settings(tmp_path, adapters=static(fixed))) as client,
    ):
        answer = await client.stub.RegisterAdapter(
            cpb.RegisterAdapterRequest(address=dynamic.address, mesh="istio")
        )
        assert answer.adapter.mesh == "istio"
        by_address = {r.address: r for r in answer.adapter.replicas}
        assert by_address[dynamic.address].source == cpb.REGISTRATION_SOURCE_DYNAMIC
        assert by_address[dynamic.address].adapter_version == "1.0.0+d"
        await client.wait_serving(dynamic.address)
        again = await client.stub.RegisterAdapter(
            cpb.RegisterAdapterRequest(address=dynamic.address)
        )
        assert len(again.adapter.replicas) == 2  # idempotent

        with pytest.raises(grpc.aio.AioRpcError) as static_removal:
            await client.stub.DeregisterAdapter(cpb.DeregisterAdapterRequest(address=fixed.address))
        assert code_of(static_removal.value) == grpc.StatusCode.FAILED_PRECONDITION

        await client.stub.DeregisterAdapter(cpb.DeregisterAdapterRequest(address=dynamic.address))
        assert await client.replica(dynamic.address) is None
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await client.stub.DeregisterAdapter(
                cpb.DeregisterAdapterRequest(address=dynamic.address)
            )
        assert code_of(unknown.value) == grpc.StatusCode.NOT_FOUND


async def test_register_refuses_wrong_mesh_and_unreachable_address(tmp_path: Path) -> None:
    async with (
        fakes(("linkerd", "l")) as (linkerd,),
        coordinator(make_settings(tmp_path)) as client,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as wrong:
            await client.stub.RegisterAdapter(
                cpb.RegisterAdapterRequest(address=linkerd.address, mesh="istio")
            )
        assert code_of(wrong.value) == grpc.StatusCode.FAILED_PRECONDITION
        assert "'linkerd'" in wrong.value.details() and "'istio'" in wrong.value.details()

        address = linkerd.address
        await linkerd.server.stop(grace_seconds=0)
        with pytest.raises(grpc.aio.AioRpcError) as down:
            await client.stub.RegisterAdapter(cpb.RegisterAdapterRequest(address=address))
        assert code_of(down.value) == grpc.StatusCode.UNAVAILABLE
        assert address in down.value.details()
        assert "UNAVAILABLE" in down.value.details()  # the dial error itself
        listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest())
        assert list(listed.adapters) == []


async def test_plaintext_to_a_remote_address_is_refused() -> None:
    registry = Registry(lambda address: dial(address, tls=None), call_timeout=1.0)
    try:
        with pytest.raises(RegistrationError, match="plaintext") as refused:
            await registry.register("10.20.30.40:10000")
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert registry.replicas() == []
    finally:
        await registry.close()


async def test_health_moves_a_replica_out_of_and_back_into_rotation(tmp_path: Path) -> None:
    async with (
        fakes(("istio", "h")) as (replica,),
        coordinator(make_settings(tmp_path, adapters=static(replica))) as client,
    ):
        registry = client.coordinator.registry
        changes: list[RegistryChange] = []
        registry.add_listener(changes.append)
        await client.wait_serving(replica.address)
        assert [r.address for r in registry.healthy("istio")] == [replica.address]

        await replica.set_serving(False)
        shown = await client.wait_replica(
            replica.address,
            lambda r: r is not None and r.state == cpb.REPLICA_STATE_NOT_SERVING,
        )
        assert shown is not None and "NOT_SERVING" in shown.last_error
        assert registry.healthy("istio") == []

        await replica.set_serving(True)
        await client.wait_serving(replica.address)
        assert registry.healthy("istio")[0].last_error == ""
        states = [c.replica.state for c in changes if c.kind == "state"]
        assert states[-2:] == [ReplicaState.NOT_SERVING, ReplicaState.SERVING]


async def test_identity_is_fetched_again_when_a_replica_comes_back(tmp_path: Path) -> None:
    async with fakes(("istio", "old")) as (old,):
        address, port = old.address, old.server.port
        async with coordinator(make_settings(tmp_path, adapters=static(old))) as client:
            await client.wait_serving(address)
            assert (await client.replica(address)).adapter_version == "1.0.0+old"  # type: ignore[union-attr]
            await old.server.stop(grace_seconds=0)
            await client.wait_replica(
                address, lambda r: r is not None and r.state == cpb.REPLICA_STATE_NOT_SERVING
            )
            new = await start_fake("istio", "new", port=port)  # a new build on the same address
            try:
                back = await client.wait_replica(
                    address, lambda r: r is not None and r.state == cpb.REPLICA_STATE_SERVING
                )
                assert back is not None
                assert back.adapter_version == "1.0.0+new"
                assert back.event_stream_id == "stream-new"
                assert new.fake.calls("GetInfo") and new.fake.calls("ListOperations")
            finally:
                await new.server.stop(grace_seconds=0)


async def test_listeners_hear_added_and_removed() -> None:
    registry = Registry(lambda address: dial(address, tls=None), call_timeout=1.0)
    heard: list[tuple[str, str]] = []
    remove = registry.add_listener(lambda c: heard.append((c.kind, c.replica.address)))
    try:
        registry.add("127.0.0.1:1", mesh="istio", source=Source.STATIC)
        assert registry.replicas("istio")[0].state is ReplicaState.CONNECTING
        assert registry.channel("127.0.0.1:1") is not None
        await registry.remove("127.0.0.1:1")
        remove()
        registry.add("127.0.0.1:2", mesh="istio", source=Source.STATIC)
        assert heard[:1] == [("added", "127.0.0.1:1")]
        assert ("removed", "127.0.0.1:1") in heard
        assert all(address == "127.0.0.1:1" for _, address in heard)
    finally:
        await registry.close()


async def test_static_replica_of_another_mesh_stays_out_of_rotation(tmp_path: Path) -> None:
    async with fakes(("linkerd", "wrong")) as (wrong,):
        settings = make_settings(
            tmp_path, adapters=(StaticAdapter(mesh="istio", address=wrong.address),)
        )
        async with coordinator(settings) as client:
            replica = await client.wait_replica(
                wrong.address, lambda r: r is not None and "linkerd" in r.last_error
            )
            assert replica is not None
            assert replica.state == cpb.REPLICA_STATE_NOT_SERVING
            assert "'istio'" in replica.last_error
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await client.stub.ListMeshVersions(cpb.ListMeshVersionsRequest(mesh="istio"))
            assert code_of(error.value) == grpc.StatusCode.UNAVAILABLE
            assert wrong.fake.calls("ListMeshVersions") == []


@pytest.mark.parametrize(
    "target",
    [
        "unix:{socket}",
        "unix://{socket}",
        "unix-abstract:meshplane-test",
        "dns:///localhost:1",
        "ipv4:127.0.0.1:1,127.0.0.1:2",
        "127.0.0.1",
        "127.0.0.1:0",
        "127.0.0.1:99999",
        "[not-v6]:1",
        "host/path:1",
        "user@127.0.0.1:1",
    ],
)
async def test_register_takes_host_and_port_only_and_never_dials_anything_else(
    tmp_path: Path, target: str
) -> None:
    # A listening Unix socket on the coordinator's host (as a Docker or kubelet socket would
    # be): before, RegisterAdapter of unix:PATH counted as loopback and was dialled.
    socket_path = tmp_path / "host.sock"
    accepted: list[object] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        writer.close()

    listener = await asyncio.start_unix_server(record, path=str(socket_path))
    try:
        async with coordinator(make_settings(tmp_path)) as client:
            address = target.format(socket=socket_path)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await client.stub.RegisterAdapter(cpb.RegisterAdapterRequest(address=address))
            assert code_of(refused.value) == grpc.StatusCode.INVALID_ARGUMENT
            details = refused.value.details() or ""
            assert details.startswith("address: ") and "is not host:port" in details
            assert "--adapter" in details
        assert accepted == []
    finally:
        listener.close()
        await listener.wait_closed()
