"""Transport security end to end: client →(mTLS)→ coordinator →(mTLS)→ adapter, with a CA the
test generates; clients and coordinators without a valid certificate are refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.server.assembly import build_coordinator
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving.tls import ClientTls, TlsConfig, dial
from tests.coordinator.identities import CALLERS, channel_as
from tests.coordinator.routing_harness import make_settings, start_fake, static
from tests.serving.certificates import CertificateAuthority


def _mtls(ca: CertificateAuthority, name: str) -> TlsConfig:
    issued = ca.issue(name, server=True)
    return TlsConfig(
        cert_path=issued.cert_path, key_path=issued.key_path, client_ca_path=ca.cert_path
    )


def _client(
    ca: CertificateAuthority,
    name: str | None,
    *,
    trust: Path | None = None,
    groups: tuple[str, ...] = (),
) -> ClientTls:
    if name is None:
        return ClientTls(ca_path=trust or ca.cert_path)
    issued = ca.issue(name, server=False, organizations=groups)
    return ClientTls(
        ca_path=trust or ca.cert_path, cert_path=issued.cert_path, key_path=issued.key_path
    )


async def _list(address: str, tls: ClientTls) -> cpb.ListAdaptersResponse:
    channel = dial(address, tls=tls)
    try:
        answer: cpb.ListAdaptersResponse = await cpb_grpc.CoordinatorServiceStub(
            channel
        ).ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        return answer
    finally:
        await channel.close()


async def test_mutual_tls_on_both_hops_and_refusals(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path, "meshplane")
    stranger = CertificateAuthority(tmp_path, "stranger")
    adapter = await start_fake("istio", "secure", tls=_mtls(ca, "adapter"))
    settings = make_settings(
        tmp_path,
        adapters=static(adapter),
        tls=_mtls(ca, "coordinator"),
        adapter_tls=_client(ca, "coordinator-client"),
    )
    built = build_coordinator(settings)
    await built.start()
    try:
        # The client certificate is the caller's identity: CN user, O groups (here the admins).
        channel = dial(built.address, tls=_client(ca, "cli", groups=("meshplane:admins",)))
        try:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            async with asyncio.timeout(10):
                while True:
                    listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
                    replica = listed.adapters[0].replicas[0]
                    if replica.state == cpb.REPLICA_STATE_SERVING:
                        break
                    await asyncio.sleep(0.02)
            answer = await stub.ApplyOperation(
                cpb.ApplyOperationRequest(
                    mesh="istio", request=apb.ApplyOperationRequest(operation="install")
                ),
                timeout=5,
            )
            assert answer.operation.adapter_address == adapter.address
            assert len(adapter.fake.calls("ApplyOperation")) == 1
            received = adapter.fake.received[-1]
            assert received.request.username == "cli"
            assert received.metadata["x-meshplane-subject"] == "cli"
            assert received.metadata["x-meshplane-groups"] == "meshplane:admins"
        finally:
            await channel.close()

        for refused in (
            _client(ca, None),  # no client certificate
            _client(stranger, "intruder", trust=ca.cert_path),  # certificate from another CA
        ):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await _list(built.address, refused)
            assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):  # plaintext to a TLS port
            channel = grpc.aio.insecure_channel(built.address)
            try:
                await cpb_grpc.CoordinatorServiceStub(channel).ListAdapters(
                    cpb.ListAdaptersRequest(), timeout=5
                )
            finally:
                await channel.close()
    finally:
        await built.stop(grace_seconds=0)
        await adapter.server.stop(grace_seconds=0)


async def test_coordinator_without_a_client_certificate_cannot_use_the_adapter(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority(tmp_path, "meshplane")
    adapter = await start_fake("istio", "secure", tls=_mtls(ca, "adapter"))
    settings = make_settings(
        tmp_path, adapters=static(adapter), adapter_tls=ClientTls(ca_path=ca.cert_path)
    )
    built = build_coordinator(settings)
    await built.start()
    channel = channel_as(built.address)
    try:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        async with asyncio.timeout(10):
            while True:
                listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
                replica = listed.adapters[0].replicas[0]
                if replica.state == cpb.REPLICA_STATE_NOT_SERVING and replica.last_error:
                    break
                await asyncio.sleep(0.02)
        assert "UNAVAILABLE" in replica.last_error
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.ApplyOperation(
                cpb.ApplyOperationRequest(
                    mesh="istio", request=apb.ApplyOperationRequest(operation="install")
                )
            )
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE
        assert adapter.fake.calls("ApplyOperation") == []
    finally:
        await channel.close()
        await built.stop(grace_seconds=0)
        await adapter.server.stop(grace_seconds=0)


async def _replica_state(stub: cpb_grpc.CoordinatorServiceStub, *, serving: bool) -> str:
    """Wait until the only replica is SERVING (or NOT_SERVING with an error); its last error."""
    async with asyncio.timeout(10):
        while True:
            listed = await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            replica = listed.adapters[0].replicas[0]
            if serving and replica.state == cpb.REPLICA_STATE_SERVING:
                return str(replica.last_error)
            failed = replica.state == cpb.REPLICA_STATE_NOT_SERVING and replica.last_error
            if not serving and failed:
                return str(replica.last_error)
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("server_name", ["mp-meshplane-adapter.meshplane.svc", None])
async def test_one_certificate_for_both_ends_and_the_adapters_name_as_the_chart_sets_them(
    tmp_path: Path, server_name: str | None
) -> None:
    """The Helm chart's tls.enabled layout: every pod mounts one Secret (a certificate valid
    for server and client authentication, and its CA); the coordinator dials adapters by pod IP
    (here 127.0.0.1, which the certificate does not name) and verifies the name it is told; its
    kubelet probes use a plaintext health port."""
    ca = CertificateAuthority(tmp_path, "meshplane")
    shared = ca.issue(
        "shared", server=True, client=True, dns_names=("mp-meshplane-adapter.meshplane.svc",)
    )
    adapter = await start_fake(
        "istio",
        "secure",
        tls=TlsConfig(
            cert_path=shared.cert_path, key_path=shared.key_path, client_ca_path=ca.cert_path
        ),
    )
    settings = make_settings(
        tmp_path,
        adapters=static(adapter),
        adapter_tls=ClientTls(
            ca_path=ca.cert_path,
            cert_path=shared.cert_path,
            key_path=shared.key_path,
            server_name=server_name,
        ),
        health_port=0,
    )
    built = build_coordinator(settings)
    await built.start()
    health_port = built.server.health_port
    assert health_port is not None
    channel = channel_as(built.address)
    try:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        error = await _replica_state(stub, serving=server_name is not None)
        if server_name is None:  # verified against the dialled IP, which it does not name
            assert "UNAVAILABLE" in error
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as health:
            reply = await health_pb2_grpc.HealthStub(health).Check(
                health_pb2.HealthCheckRequest(
                    service="meshplane.coordinator.v1.CoordinatorService"
                ),
                timeout=5,
            )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()
        await built.stop(grace_seconds=0)
        await adapter.server.stop(grace_seconds=0)


async def test_a_client_certificate_is_an_identity_and_a_token_takes_precedence(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority(tmp_path, "meshplane")
    settings = make_settings(tmp_path, tls=_mtls(ca, "coordinator"))
    built = build_coordinator(settings)
    await built.start()
    try:
        # CN=carl with no meshplane group: authenticated, allowed nothing.
        channel = dial(built.address, tls=_client(ca, "carl", groups=("team-c",)))
        try:
            stub = cpb_grpc.CoordinatorServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "'carl' may not list adapters" in denied.value.details()
            assert "no meshplane role" in denied.value.details()
            # With a bearer token the token decides who calls (the viewer here).
            metadata = (("authorization", f"Bearer {CALLERS['viewer'].token}"),)
            await stub.ListAdapters(cpb.ListAdaptersRequest(), metadata=metadata, timeout=5)
            # A bad token is refused, never quietly the certificate's identity.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListAdapters(
                    cpb.ListAdaptersRequest(),
                    metadata=(("authorization", "Bearer wrong"),),
                    timeout=5,
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            await channel.close()
        records, _ = await built.store.list_audit_records()
        assert [(r.subject, r.authenticated_by, r.groups) for r in records[-1:]] == [
            ("carl", "certificate", ("team-c",))
        ]
    finally:
        await built.stop(grace_seconds=0)
