"""An adapter serving mTLS on its gRPC port and plaintext health on ``--health-port`` (what
kubelet's ``grpc:`` probes need), and the setting from flag and environment."""

from __future__ import annotations

import argparse
from pathlib import Path

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.process.settings import SettingsError, add_arguments, settings_from_args
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving.tls import ClientTls, TlsConfig, dial
from tests.kit.toy_adapter import DECLARATION, toy_adapter
from tests.serving.certificates import CertificateAuthority

ADAPTER_SERVICE = "meshplane.adapter.v1.MeshAdapterService"
SERVING = health_pb2.HealthCheckResponse.SERVING


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


async def test_tls_adapter_answers_plaintext_health_on_its_health_port(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path, "mesh-ca")
    server_leaf = ca.issue("adapter", server=True)
    client_leaf = ca.issue("coordinator", server=False)
    tls = TlsConfig(
        cert_path=server_leaf.cert_path,
        key_path=server_leaf.key_path,
        client_ca_path=ca.cert_path,
    )
    async with toy_adapter(tls=tls, health_port=0) as harness:
        server = harness.adapter.server
        assert server.health_port is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.health_port}") as health:
            stub = health_pb2_grpc.HealthStub(health)
            for name in ("", ADAPTER_SERVICE):
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
                assert reply.status == SERVING, name

        # Plaintext on the main port gets nowhere, health included.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.MeshAdapterServiceStub(plain).GetInfo(pb.GetInfoRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await health_pb2_grpc.HealthStub(plain).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=5
                )
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        # The coordinator's way in: a client certificate from the same CA.
        coordinator_tls = ClientTls(
            ca_path=ca.cert_path, cert_path=client_leaf.cert_path, key_path=client_leaf.key_path
        )
        channel = dial(f"localhost:{server.port}", tls=coordinator_tls)
        try:
            info = await pb_grpc.MeshAdapterServiceStub(channel).GetInfo(
                pb.GetInfoRequest(), timeout=5
            )
            assert info.mesh == "toy"
        finally:
            await channel.close()


def test_health_port_from_flag_or_environment_and_off_by_default() -> None:
    assert settings_from_args(_parse(), DECLARATION, {}).health_port is None
    env = {"MESHPLANE_ADAPTER_HEALTH_PORT": "10900"}
    assert settings_from_args(_parse(), DECLARATION, env).health_port == 10900
    assert settings_from_args(_parse("--health-port", "10901"), DECLARATION, env).health_port == (
        10901
    )


def test_health_port_cannot_be_the_grpc_port() -> None:
    with pytest.raises(SettingsError, match="--health-port 12000 is the gRPC port"):
        settings_from_args(_parse("--port", "12000", "--health-port", "12000"), DECLARATION, {})
    with pytest.raises(SettingsError, match=r"MESHPLANE_ADAPTER_HEALTH_PORT='70000'"):
        settings_from_args(_parse(), DECLARATION, {"MESHPLANE_ADAPTER_HEALTH_PORT": "70000"})
