"""TLS and mTLS between real servers and clients, with a CA generated in the test."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import grpc.aio
import pytest

from meshplane.adapter.v1 import adapter_pb2, adapter_pb2_grpc
from serving import (
    ClientTls,
    GrpcServer,
    InsecureTransportError,
    ServerConfig,
    TlsConfig,
    add_client_tls_arguments,
    add_server_tls_arguments,
    client_tls_from_args,
    dial,
    is_loopback,
    server_tls_from_args,
)
from tests.serving.certificates import CertificateAuthority
from tests.serving.servicers import ADAPTER_SERVICE, EchoAdapter


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path, "meshplane-test")


async def _start(tls: TlsConfig) -> GrpcServer:
    server = GrpcServer(ServerConfig(port=0, grace_seconds=0, tls=tls))
    server.add_service(
        adapter_pb2_grpc.add_MeshAdapterServiceServicer_to_server, EchoAdapter(), ADAPTER_SERVICE
    )
    await server.start()
    return server


async def _get_info(address: str, tls: ClientTls | None) -> str:
    channel = dial(address, tls=tls)
    try:
        stub = adapter_pb2_grpc.MeshAdapterServiceStub(channel)
        reply = await stub.GetInfo(adapter_pb2.GetInfoRequest(), timeout=5)
        return str(reply.mesh)
    finally:
        await channel.close()


async def test_tls_server_accepts_a_client_that_trusts_its_ca(ca: CertificateAuthority) -> None:
    leaf = ca.issue("server", server=True)
    server = await _start(TlsConfig(cert_path=leaf.cert_path, key_path=leaf.key_path))
    try:
        address = f"localhost:{server.port}"
        assert await _get_info(address, ClientTls(ca_path=ca.cert_path)) == "echo"
        # A plaintext client cannot talk to a TLS server.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _get_info(f"127.0.0.1:{server.port}", None)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop()


async def test_mtls_requires_a_client_certificate_from_the_client_ca(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    leaf = ca.issue("server", server=True)
    client = ca.issue("coordinator", server=False)
    rogue_ca = CertificateAuthority(tmp_path, "rogue")
    rogue = rogue_ca.issue("intruder", server=False)
    server = await _start(
        TlsConfig(cert_path=leaf.cert_path, key_path=leaf.key_path, client_ca_path=ca.cert_path)
    )
    try:
        address = f"127.0.0.1:{server.port}"
        good = ClientTls(ca_path=ca.cert_path, cert_path=client.cert_path, key_path=client.key_path)
        assert await _get_info(address, good) == "echo"

        for refused in (
            ClientTls(ca_path=ca.cert_path),
            ClientTls(ca_path=ca.cert_path, cert_path=rogue.cert_path, key_path=rogue.key_path),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await _get_info(address, refused)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        # The server keeps serving good clients after refusing bad ones.
        assert await _get_info(address, good) == "echo"
    finally:
        await server.stop()


async def test_client_refuses_a_server_signed_by_another_ca(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    other = CertificateAuthority(tmp_path, "other")
    leaf = other.issue("server", server=True)
    server = await _start(TlsConfig(cert_path=leaf.cert_path, key_path=leaf.key_path))
    try:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _get_info(f"127.0.0.1:{server.port}", ClientTls(ca_path=ca.cert_path))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop()


async def test_dial_refuses_plaintext_off_loopback_unless_allowed() -> None:
    with pytest.raises(InsecureTransportError, match="--allow-insecure"):
        dial("10.1.2.3:50051", tls=None)
    with pytest.raises(InsecureTransportError):
        dial("adapter-istio.meshplane.svc:50051", tls=None)
    channel = dial("10.1.2.3:50051", tls=None, allow_insecure=True)
    await channel.close()
    channel = dial("localhost:50051", tls=None)
    await channel.close()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:1", True),
        ("127.9.9.9:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("dns:///localhost:50051", True),
        ("unix:/tmp/adapter.sock", True),
        ("10.0.0.1:50051", False),
        ("[2001:db8::1]:443", False),
        ("istio-adapter:50051", False),
        ("localhost.example.com:1", False),
    ],
)
def test_is_loopback(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_client_tls_needs_cert_and_key_together(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both"):
        ClientTls(cert_path=tmp_path / "c.crt")


def test_server_flags_build_tls_config() -> None:
    parser = argparse.ArgumentParser()
    add_server_tls_arguments(parser)
    assert server_tls_from_args(parser.parse_args([])) is None
    cfg = server_tls_from_args(
        parser.parse_args(["--tls-cert", "s.crt", "--tls-key", "s.key", "--tls-client-ca", "ca"])
    )
    assert cfg == TlsConfig(
        cert_path=Path("s.crt"), key_path=Path("s.key"), client_ca_path=Path("ca")
    )
    assert cfg.mutual
    with pytest.raises(ValueError, match="go together"):
        server_tls_from_args(parser.parse_args(["--tls-cert", "s.crt"]))
    with pytest.raises(ValueError, match="needs --tls-cert"):
        server_tls_from_args(parser.parse_args(["--tls-client-ca", "ca"]))


def test_client_flags_with_prefix_sit_beside_server_flags() -> None:
    parser = argparse.ArgumentParser()
    add_server_tls_arguments(parser)
    add_client_tls_arguments(parser, prefix="adapter-")
    args = parser.parse_args(
        ["--tls-cert", "s.crt", "--tls-key", "s.key", "--adapter-tls-ca", "ca.crt"]
    )
    assert client_tls_from_args(args, prefix="adapter-") == ClientTls(ca_path=Path("ca.crt"))
    assert args.adapter_allow_insecure is False
    assert client_tls_from_args(parser.parse_args([]), prefix="adapter-") is None
