"""Transport security end to end: client →(mTLS)→ coordinator →(mTLS)→ adapter, with a CA the
test generates; clients and coordinators without a valid certificate are refused."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import grpc  # type: ignore[import-untyped, unused-ignore]
import grpc.aio  # type: ignore[import-untyped, unused-ignore]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from coordinator.server import build_coordinator
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from serving.tls import ClientTls, TlsConfig, dial
from tests.coordinator.routing_harness import make_settings, start_fake, static
from tests.serving.certificates import CertifiedKey


@dataclass(frozen=True, kw_only=True)
class Issued:
    cert_path: Path
    key_path: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    """A throwaway CA (P-256) written under ``directory``; issues server and client leaves."""

    def __init__(self, directory: Path, name: str) -> None:
        self.directory = directory
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = directory / f"{name}-ca.crt"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, common_name: str, *, server: bool) -> Issued:
        """A leaf signed by this CA; server leaves name localhost and 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        issued = Issued(
            cert_path=self.directory / f"{self.name}-{common_name}.crt",
            key_path=self.directory / f"{self.name}-{common_name}.key",
        )
        issued.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key_path.write_bytes(_pem_key(key))
        return issued


def _mtls(ca: CertifiedKey, name: str) -> TlsConfig:
    issued = ca.issue(name, server=True)
    return TlsConfig(
        cert_path=issued.cert_path, key_path=issued.key_path, client_ca_path=ca.cert_path
    )


def _client(ca: CertifiedKey, name: str | None, *, trust: Path | None = None) -> ClientTls:
    if name is None:
        return ClientTls(ca_path=trust or ca.cert_path)
    issued = ca.issue(name, server=False)
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
    ca = CertifiedKey(tmp_path, "meshplane")
    stranger = CertifiedKey(tmp_path, "stranger")
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
        channel = dial(built.address, tls=_client(ca, "cli"))
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
    ca = CertifiedKey(tmp_path, "meshplane")
    adapter = await start_fake("istio", "secure", tls=_mtls(ca, "adapter"))
    settings = make_settings(
        tmp_path, adapters=static(adapter), adapter_tls=ClientTls(ca_path=ca.cert_path)
    )
    built = build_coordinator(settings)
    await built.start()
    channel = grpc.aio.insecure_channel(built.address)
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
