"""An adapter with ``--coordinator-token-file`` serves only its coordinator, answers link
challenges, and believes forwarded identity headers only from a trusted coordinator."""

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
from serving.link_tokens import CHALLENGE_HEADER, PROOF_HEADER, link_proof
from serving.tls import ClientTls, TlsConfig, dial
from tests.kit.toy_adapter import DECLARATION, toy_adapter
from tests.serving.certificates import CertificateAuthority

TOKEN = "link-token-0123456789abcdef"
AS_COORDINATOR = (("authorization", f"Bearer {TOKEN}"),)
ALICE_THE_ADMIN = (
    ("x-meshplane-subject", "alice%20%C3%A9"),
    ("x-meshplane-groups", "meshplane:admins,team%2Cblue"),
    ("x-meshplane-uid", "u-1"),
)


def _install(operation_id: str, username: str = "") -> pb.ApplyOperationRequest:
    return pb.ApplyOperationRequest(
        operation_id=operation_id, operation="install", username=username
    )


async def test_callers_without_the_link_token_are_refused() -> None:
    async with toy_adapter(coordinator_token=TOKEN) as harness:
        stub = harness.stub
        for metadata in ((), (("authorization", "Bearer not-the-token"),), ALICE_THE_ADMIN):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetInfo(pb.GetInfoRequest(), timeout=5, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "accepts calls only from its coordinator" in str(err.value.details())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ApplyOperation(_install("op-rogue"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert harness.adapter.runner.get("op-rogue") is None
        stream = stub.StreamEvents(pb.StreamEventsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stream.read()
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

        # health stays open; the coordinator's token opens the rest
        health = health_pb2_grpc.HealthStub(harness.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        info = await stub.GetInfo(pb.GetInfoRequest(), timeout=5, metadata=AS_COORDINATOR)
        assert info.mesh == "toy"


async def test_a_link_challenge_is_answered_with_the_proof() -> None:
    async with toy_adapter(coordinator_token=TOKEN) as harness:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await harness.stub.GetInfo(
                pb.GetInfoRequest(), timeout=5, metadata=((CHALLENGE_HEADER, "nonce-1"),)
            )
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        trailing = dict(err.value.trailing_metadata() or ())
        assert trailing[PROOF_HEADER] == link_proof(TOKEN, "nonce-1")
        assert trailing[PROOF_HEADER] != link_proof("another-token-000000000", "nonce-1")


async def test_the_coordinator_names_the_end_user() -> None:
    async with toy_adapter(coordinator_token=TOKEN) as harness:
        answer = await harness.stub.ApplyOperation(
            _install("op-1", username="typed-by-the-client"),
            timeout=5,
            metadata=AS_COORDINATOR + ALICE_THE_ADMIN,
        )
        assert answer.operation.username == "alice é"
        # without identity headers the coordinator's own request stands
        answer = await harness.stub.ApplyOperation(
            _install("op-2", username="coordinator-user"), timeout=5, metadata=AS_COORDINATOR
        )
        assert answer.operation.username == "coordinator-user"


async def test_an_admin_the_coordinator_vouches_for_may_use_protected_namespaces() -> None:
    protected = pb.ApplyOperationRequest(
        operation_id="op-kube-system", operation="install", namespace="kube-system"
    )
    developer = (("x-meshplane-subject", "dev"), ("x-meshplane-groups", "meshplane:operators"))
    async with toy_adapter(coordinator_token=TOKEN) as harness:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.stub.ApplyOperation(
                protected, timeout=5, metadata=AS_COORDINATOR + developer
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "kube-system is protected" in str(refused.value.details())
        answer = await harness.stub.ApplyOperation(
            protected, timeout=5, metadata=AS_COORDINATOR + ALICE_THE_ADMIN
        )
        assert answer.operation.namespace == "kube-system"
        assert answer.operation.username == "alice é"


async def test_identity_headers_mean_nothing_without_a_trusted_coordinator() -> None:
    async with toy_adapter() as harness:
        answer = await harness.stub.ApplyOperation(
            _install("op-1", username="bob"), timeout=5, metadata=ALICE_THE_ADMIN
        )
        assert answer.operation.username == "bob"
        # claiming meshplane:admins elevates nothing either
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await harness.stub.ApplyOperation(
                pb.ApplyOperationRequest(
                    operation_id="op-2", operation="install", namespace="kube-system"
                ),
                timeout=5,
                metadata=ALICE_THE_ADMIN,
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_client_certificate_from_the_pinned_ca_is_a_trusted_coordinator(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority(tmp_path, "link-ca")
    leaf = ca.issue("adapter", server=True)
    tls = TlsConfig(cert_path=leaf.cert_path, key_path=leaf.key_path, client_ca_path=ca.cert_path)
    coordinator = ca.issue("coordinator", server=False)
    async with toy_adapter(tls=tls) as harness:
        channel = dial(
            f"localhost:{harness.adapter.server.port}",
            tls=ClientTls(
                ca_path=ca.cert_path,
                cert_path=coordinator.cert_path,
                key_path=coordinator.key_path,
            ),
        )
        try:
            answer = await pb_grpc.MeshAdapterServiceStub(channel).ApplyOperation(
                _install("op-1", username="bob"), timeout=5, metadata=ALICE_THE_ADMIN
            )
        finally:
            await channel.close()
        assert answer.operation.username == "alice é"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_token_file_setting(tmp_path: Path) -> None:
    path = tmp_path / "link-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    assert settings_from_args(_parse(), DECLARATION, {}).coordinator_token is None
    resolved = settings_from_args(_parse("--coordinator-token-file", str(path)), DECLARATION, {})
    assert resolved.coordinator_token == TOKEN and resolved.trusts_forwarded_identity
    assert TOKEN not in repr(resolved)
    env = {"MESHPLANE_ADAPTER_COORDINATOR_TOKEN_FILE": str(path)}
    assert settings_from_args(_parse(), DECLARATION, env).coordinator_token == TOKEN
    path.chmod(0o644)
    with pytest.raises(SettingsError, match="readable by every user"):
        settings_from_args(_parse("--coordinator-token-file", str(path)), DECLARATION, {})
    path.write_text("short\n")
    path.chmod(0o600)
    with pytest.raises(SettingsError, match="at least 16 characters"):
        settings_from_args(_parse("--coordinator-token-file", str(path)), DECLARATION, {})
    with pytest.raises(SettingsError, match="cannot read"):
        settings_from_args(
            _parse("--coordinator-token-file", str(tmp_path / "missing")), DECLARATION, {}
        )
