"""Who may call the coordinator, through its real gRPC interface: authentication, the role
matrix generated from the one permission table, the subject replacing ``username``, the token
file's reloads, and the audit trail read back with `meshplane audit`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.server.assembly import build_coordinator
from coordinator.server.identity.permissions import GRANTS, RULES, Role, cluster_role_rules
from coordinator.server.passthrough import MESH_METADATA_KEY
from coordinator.server.settings import SettingsError
from coordinator.store import OperationRecord
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from meshplane.perf.v1 import perf_pb2 as ppb
from tests.coordinator.identities import (
    ADMIN,
    CALLERS,
    Caller,
    channel_as,
    token_line,
    write_token_file,
)
from tests.coordinator.routing_harness import (
    Client,
    RunningFake,
    coordinator,
    fakes,
    make_settings,
    static,
)

SERVICES = (
    "meshplane.coordinator.v1.CoordinatorService",
    "meshplane.adapter.v1.MeshAdapterService",
)
ROLES: dict[str, Role] = {
    "nobody": Role.NONE,
    "viewer": Role.VIEWER,
    "operator": Role.OPERATOR,
    "admin": Role.ADMIN,
}

CATALOGUE = [
    apb.OperationDescriptor(
        id="install", category=apb.OPERATION_CATEGORY_INSTALL, default_namespace="istio-system"
    ),
    apb.OperationDescriptor(
        id="bookinfo",
        category=apb.OPERATION_CATEGORY_SAMPLE_APPLICATION,
        default_namespace="default",
    ),
    apb.OperationDescriptor(id="label-namespace", category=apb.OPERATION_CATEGORY_CONFIGURE),
    apb.OperationDescriptor(
        id="custom", category=apb.OPERATION_CATEGORY_CUSTOM, default_namespace="default"
    ),
]


def _methods() -> list[tuple[str, Any]]:
    """Every method of both services the coordinator serves, with its descriptor."""
    pool = descriptor_pool.Default()
    return [
        (f"/{service}/{method.name}", method)
        for service in SERVICES
        for method in pool.FindServiceByName(service).methods
    ]


def _raw(channel: Any, path: str, *, streaming: bool) -> Any:
    """A bytes-in, bytes-out callable for any method (no stubs needed)."""
    make = channel.unary_stream if streaming else channel.unary_unary
    return make(path, request_serializer=None, response_deserializer=None)


async def _status_of(channel: Any, path: str, request: bytes, *, streaming: bool, **kw: Any) -> Any:
    """The status code a call ends with (OK when it succeeds)."""
    call = _raw(channel, path, streaming=streaming)
    try:
        if streaming:
            stream = call(request, timeout=5, **kw)
            try:
                await asyncio.wait_for(stream.read(), 2)
            except TimeoutError:
                pass  # a follow-style stream that is still open: it was let in
            finally:
                stream.cancel()
        else:
            await call(request, timeout=5, **kw)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def istio(tmp_path: Path) -> AsyncIterator[tuple[RunningFake, Client]]:
    """A fake istio adapter with a four-category catalogue behind a token-file coordinator."""
    async with fakes(("istio", "a")) as (adapter,):
        adapter.fake.catalogue = list(CATALOGUE)
        async with coordinator(make_settings(tmp_path, adapters=static(adapter))) as client:
            await client.wait_serving(adapter.address)
            yield adapter, client


# -- authentication -------------------------------------------------------------------------


def test_every_method_has_exactly_one_rule_and_every_access_a_grant() -> None:
    assert {path for path, _ in _methods()} == set(RULES)
    fixed = {(rule.resource, rule.verb) for rule in RULES.values()}
    assert fixed <= set(GRANTS)
    admin = {(r, v) for rule in cluster_role_rules(Role.ADMIN) for r in rule["resources"]
             for v in rule["verbs"]}  # fmt: skip
    viewer = {(r, v) for rule in cluster_role_rules(Role.VIEWER) for r in rule["resources"]
              for v in rule["verbs"]}  # fmt: skip
    assert admin == set(GRANTS)
    assert viewer == {key for key, role in GRANTS.items() if role == Role.VIEWER}


async def test_anonymous_calls_are_unauthenticated_on_every_method_but_health(
    istio: tuple[RunningFake, Client],
) -> None:
    adapter, client = istio
    before = len(adapter.fake.received)
    async with channel_as(client.coordinator.address, None) as anonymous:
        for path, method in _methods():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                call = _raw(anonymous, path, streaming=method.server_streaming)
                if method.server_streaming:
                    await call(b"", metadata=((MESH_METADATA_KEY, "istio"),), timeout=5).read()
                else:
                    await call(b"", metadata=((MESH_METADATA_KEY, "istio"),), timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, path
            assert "authorization: Bearer <token>" in refused.value.details(), path
        # A wrong token, and a malformed header, are refused the same way.
        for metadata in (("authorization", "Bearer not-a-token"), ("authorization", "Basic x")):
            with pytest.raises(grpc.aio.AioRpcError) as wrong:
                await cpb_grpc.CoordinatorServiceStub(anonymous).ListAdapters(
                    cpb.ListAdaptersRequest(), metadata=(metadata,), timeout=5
                )
            assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health = await health_pb2_grpc.HealthStub(anonymous).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Nothing reached the adapter on the anonymous callers' behalf.
    assert [r.method for r in adapter.fake.received[before:]] == [
        r for r in [r.method for r in adapter.fake.received[before:]] if r == "StreamEvents"
    ]


# -- the role matrix ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Case:
    """One call of the matrix and the (resource, verb) pairs it needs, in the table's words."""

    method: str
    request: bytes
    needs: tuple[tuple[str, str], ...]
    label: str = ""
    service: str = SERVICES[0]

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def least(self) -> Role:
        return max(GRANTS[need] for need in self.needs)


def _apply(operation: str, **fields: Any) -> apb.ApplyOperationRequest:
    return apb.ApplyOperationRequest(operation=operation, **fields)


def _coordinator_apply(request: apb.ApplyOperationRequest) -> bytes:
    encoded: bytes = cpb.ApplyOperationRequest(mesh="istio", request=request).SerializeToString()
    return encoded


_APPLY_CASES = [
    ("install", _apply("install"), ("meshes", "create")),
    ("uninstall", _apply("install", delete=True), ("meshes", "delete")),
    ("sample", _apply("bookinfo", namespace="team-a"), ("operations", "create")),
    ("configure", _apply("label-namespace", namespace="team-a"), ("operations", "create")),
    (
        "custom",
        _apply("custom", custom_body="kind: ConfigMap\nmetadata: {name: a, namespace: team-a}\n"),
        ("operations", "create"),
    ),
    (
        "custom into kube-system",
        _apply(
            "custom", custom_body="kind: ConfigMap\nmetadata: {name: a, namespace: kube-system}"
        ),
        ("privilegedoperations", "create"),
    ),
    (
        "sample in a protected namespace",
        _apply("bookinfo", namespace="kube-public"),
        ("privilegedoperations", "create"),
    ),
    (
        "adopting objects meshplane does not own",
        _apply("bookinfo", namespace="team-a", parameters={"adopt-existing": "true"}),
        ("privilegedoperations", "create"),
    ),
    (
        "purging CRDs over users' custom resources",
        _apply("bookinfo", namespace="team-a", delete=True, parameters={"purge-crds": "force"}),
        ("privilegedoperations", "create"),
    ),
    (
        "purging CRDs unless custom resources exist",
        _apply("bookinfo", namespace="team-a", delete=True, parameters={"purge-crds": "true"}),
        ("operations", "create"),
    ),
    ("not in the catalogue", _apply("mystery"), ("meshes", "create")),
]


# size: one table of every RPC of both services and the permission it needs, read top to bottom
def _cases() -> list[Case]:
    coordinator_cases = [
        Case(method="ListAdapters", request=b"", needs=(("adapters", "list"),)),
        Case(
            method="RegisterAdapter",
            request=cpb.RegisterAdapterRequest(address="127.0.0.1:9").SerializeToString(),
            needs=(("adapters", "create"),),
        ),
        Case(
            method="DeregisterAdapter",
            request=cpb.DeregisterAdapterRequest(address="127.0.0.1:9").SerializeToString(),
            needs=(("adapters", "delete"),),
        ),
        Case(method="ListOperations", request=b"", needs=(("catalogues", "list"),)),
        Case(
            method="ListMeshVersions",
            request=cpb.ListMeshVersionsRequest(mesh="istio").SerializeToString(),
            needs=(("meshes/versions", "get"),),
        ),
        Case(
            method="GetMeshStatus",
            request=cpb.GetMeshStatusRequest(mesh="istio").SerializeToString(),
            needs=(("meshes/status", "get"),),
        ),
        Case(
            method="GetOperation",
            request=cpb.GetOperationRequest(operation_id="op-otto").SerializeToString(),
            needs=(("operations", "get"),),
        ),
        Case(
            method="CancelOperation",
            request=cpb.CancelOperationRequest(operation_id="op-otto").SerializeToString(),
            needs=(("operations", "update"),),
            label="its owner (otto) or",
        ),
        Case(
            method="CancelOperation",
            request=cpb.CancelOperationRequest(operation_id="op-ada").SerializeToString(),
            needs=(("operations/others", "update"),),
            label="someone else's",
        ),
        Case(method="ListOperationHistory", request=b"", needs=(("operations", "list"),)),
        Case(method="WatchEvents", request=b"", needs=(("events", "watch"),)),
        Case(
            method="RunPerformanceTest",
            request=ppb.RunPerformanceTestRequest().SerializeToString(),
            needs=(("performancetests", "create"),),
        ),
        Case(method="ListPerformanceResults", request=b"", needs=(("performancetests", "list"),)),
        Case(
            method="GetPerformanceResult",
            request=ppb.GetPerformanceResultRequest(id="r").SerializeToString(),
            needs=(("performancetests", "get"),),
        ),
        Case(
            method="ComparePerformanceResults",
            request=b"",
            needs=(("performancetests", "list"),),
        ),
        Case(method="ListAuditRecords", request=b"", needs=(("auditrecords", "list"),)),
        Case(
            method="RenderOperation",
            request=cpb.RenderOperationRequest(mesh="istio").SerializeToString(),
            needs=(("manifests", "get"),),
        ),
        *(
            Case(
                method="ApplyOperation",
                request=_coordinator_apply(request),
                needs=(need,),
                label=label,
            )
            for label, request, need in _APPLY_CASES
        ),
    ]
    adapter_cases = [
        Case(method="GetInfo", request=b"", needs=(("adapters", "get"),)),
        Case(method="ListOperations", request=b"", needs=(("catalogues", "list"),)),
        Case(method="ListMeshVersions", request=b"", needs=(("meshes/versions", "get"),)),
        Case(method="GetMeshStatus", request=b"", needs=(("meshes/status", "get"),)),
        Case(method="StreamEvents", request=b"", needs=(("events", "watch"),)),
        Case(method="RenderOperation", request=b"", needs=(("manifests", "get"),)),
        Case(
            method="GetOperation",
            request=apb.GetOperationRequest(operation_id="op-otto").SerializeToString(),
            needs=(("operations", "get"),),
        ),
        Case(
            method="CancelOperation",
            request=apb.CancelOperationRequest(operation_id="op-ada").SerializeToString(),
            needs=(("operations/others", "update"),),
            label="someone else's",
        ),
        *(
            Case(method="ApplyOperation", request=request.SerializeToString(), needs=(need,))
            for label, request, need in _APPLY_CASES[:3]
        ),
    ]
    return coordinator_cases + [replace(case, service=SERVICES[1]) for case in adapter_cases]


def _stored(operation_id: str, owner: str) -> OperationRecord:
    now = datetime.now(UTC)
    return OperationRecord(
        operation_id=operation_id,
        mesh="istio",
        operation="bookinfo",
        state="running",
        username=owner,
        request={"operation": "bookinfo", "namespace": "team-a"},
        cluster_results=[],
        error=None,
        adapter="127.0.0.1:1",
        created_at=now,
        updated_at=now,
    )


async def test_each_rpc_for_each_role_is_allowed_or_denied_as_the_table_says(
    istio: tuple[RunningFake, Client],
) -> None:
    _, client = istio
    store = client.coordinator.store
    await store.save_operation(_stored("op-otto", "otto"))
    await store.save_operation(_stored("op-ada", "ada"))
    cases = _cases()
    assert {case.path for case in cases} == set(RULES), "every RPC is in the matrix"
    mismatches: list[str] = []
    for role_name, role in ROLES.items():
        async with channel_as(client.coordinator.address, CALLERS[role_name]) as channel:
            for case in cases:
                code = await _status_of(
                    channel,
                    case.path,
                    case.request,
                    streaming=case.method.endswith(("WatchEvents", "StreamEvents"))
                    or case.method == "RunPerformanceTest",
                    metadata=((MESH_METADATA_KEY, "istio"),),
                )
                allowed = role >= case.least
                denied = code == grpc.StatusCode.PERMISSION_DENIED
                if allowed == denied or code == grpc.StatusCode.UNAUTHENTICATED:
                    mismatches.append(
                        f"{role_name} {case.path} {case.label}: {code.name}, table says "
                        f"{'allowed' if allowed else 'denied'}"
                    )
    assert mismatches == []


async def test_a_denial_names_the_verb_resource_and_namespace(
    istio: tuple[RunningFake, Client],
) -> None:
    adapter, client = istio
    async with channel_as(client.coordinator.address, CALLERS["operator"]) as channel:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="istio", request=_apply("install")), timeout=5
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        details = denied.value.details()
        assert "'otto' may not create meshes (meshplane.io) in namespace istio-system" in details
        assert "needs role admin (group meshplane:admins)" in details
        with pytest.raises(grpc.aio.AioRpcError) as cluster_wide:
            await stub.ListAuditRecords(cpb.ListAuditRecordsRequest(), timeout=5)
        assert "list auditrecords (meshplane.io) cluster-wide" in cluster_wide.value.details()
    assert adapter.fake.calls("ApplyOperation") == []


# -- the subject replaces username ----------------------------------------------------------


async def test_the_caller_is_the_username_and_a_spoofed_one_is_refused(
    istio: tuple[RunningFake, Client],
) -> None:
    adapter, client = istio
    otto = CALLERS["operator"]
    async with channel_as(client.coordinator.address, otto) as channel:
        stub = cpb_grpc.CoordinatorServiceStub(channel)
        answer = await stub.ApplyOperation(
            cpb.ApplyOperationRequest(mesh="istio", request=_apply("bookinfo")), timeout=5
        )
        assert answer.operation.operation.username == "otto"
        history = await stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(username="otto"), timeout=5
        )
        assert [r.operation.operation_id for r in history.operations] == [answer.operation_id]
        sent = adapter.fake.received[-1]
        assert sent.method == "ApplyOperation" and sent.request.username == "otto"
        assert sent.metadata["x-meshplane-subject"] == "otto"
        assert sent.metadata["x-meshplane-groups"] == "meshplane:operators,team-a"
        assert sent.metadata["x-meshplane-uid"] == "uid-otto"

        for spoofed in ("ada", "otto " * 50):  # 250 bytes: within the username bound
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ApplyOperation(
                    cpb.ApplyOperationRequest(
                        mesh="istio", request=_apply("bookinfo", username=spoofed)
                    ),
                    timeout=5,
                )
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "is not the authenticated caller 'otto'" in refused.value.details()
            assert len(refused.value.details()) < 250

        # The adapter contract passed through: same rule; the caller's own identity headers and
        # its token never reach the adapter.
        raw = _raw(
            channel, "/meshplane.adapter.v1.MeshAdapterService/ApplyOperation", streaming=False
        )
        forged = (
            (MESH_METADATA_KEY, "istio"),
            ("x-meshplane-subject", "ada"),
            ("x-meshplane-groups", "meshplane:admins"),
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await raw(_apply("bookinfo", username="ada").SerializeToString(), metadata=forged)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reply = apb.ApplyOperationResponse.FromString(
            await raw(_apply("bookinfo", operation_id="pt-1").SerializeToString(), metadata=forged)
        )
        assert reply.operation.username == "otto"
        sent = adapter.fake.received[-1]
        assert sent.request.operation_id == "pt-1" and sent.request.username == "otto"
        assert sent.metadata["x-meshplane-subject"] == "otto"
        assert sent.metadata["x-meshplane-groups"] == "meshplane:operators,team-a"
        assert "authorization" not in sent.metadata


# -- the token file -------------------------------------------------------------------------


async def _list_as(address: str, caller: Caller) -> Any:
    async with channel_as(address, caller) as channel:
        try:
            await cpb_grpc.CoordinatorServiceStub(channel).ListAdapters(
                cpb.ListAdaptersRequest(), timeout=5
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK


async def test_the_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    late = Caller(token="late-0c1d2e", user="lee", uid="uid-lee", groups=("meshplane:viewers",))
    settings = make_settings(tmp_path)
    assert settings.token_auth_file is not None
    async with coordinator(settings) as client:
        address = client.coordinator.address
        assert await _list_as(address, late) == grpc.StatusCode.UNAUTHENTICATED
        # Added: accepted from the next call on. The admin's line removed: refused from then on.
        write_token_file(tmp_path / "auth", [late, CALLERS["viewer"]])
        assert await _list_as(address, late) == grpc.StatusCode.OK
        assert await _list_as(address, ADMIN) == grpc.StatusCode.UNAUTHENTICATED
        # A file that became readable by everyone, or broken, is refused; the tokens before stay.
        path = settings.token_auth_file
        path.write_text(path.read_text() + token_line(ADMIN) + "\n")
        path.chmod(0o644)
        assert await _list_as(address, ADMIN) == grpc.StatusCode.UNAUTHENTICATED
        assert await _list_as(address, late) == grpc.StatusCode.OK
        path.chmod(0o600)
        assert await _list_as(address, ADMIN) == grpc.StatusCode.OK
        path.write_text("only-a-token\n")
        assert await _list_as(address, ADMIN) == grpc.StatusCode.OK


def test_a_coordinator_without_authentication_or_a_usable_token_file_does_not_start(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(SettingsError, match=r"no authentication configured.*--allow-anonymous"):
        build_coordinator(replace(settings, token_auth_file=None))
    assert settings.token_auth_file is not None
    settings.token_auth_file.chmod(0o604)
    with pytest.raises(SettingsError, match=r"readable by every user.*chmod 600"):
        build_coordinator(settings)
    settings.token_auth_file.chmod(0o600)
    settings.token_auth_file.write_text("token,,uid\n")
    with pytest.raises(SettingsError, match="entry 1: token and user must not be empty"):
        build_coordinator(settings)


async def test_allow_anonymous_alone_is_said_loudly_and_lets_everyone_in(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "meshplane_cli.main", "coordinator", "--port=0"]
    refused = await asyncio.create_subprocess_exec(
        *command, f"--data-dir={tmp_path}", stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(refused.communicate(), 60)
    assert refused.returncode == 2
    assert b"no authentication configured" in err and b"--allow-anonymous" in err

    process = await asyncio.create_subprocess_exec(
        *command,
        f"--data-dir={tmp_path}",
        "--allow-anonymous",
        "--log-format=json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ},
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        address = json.loads(await asyncio.wait_for(process.stdout.readline(), 60))["grpc"]
        assert await _list_as(address, CALLERS["nobody"]) == grpc.StatusCode.OK
        async with channel_as(address, None) as anonymous:
            listed = await cpb_grpc.CoordinatorServiceStub(anonymous).ListAdapters(
                cpb.ListAdaptersRequest(), timeout=5
            )
            assert list(listed.adapters) == []
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), 60)
    warnings = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(
        w.get("event") == "auth.anonymous_access" and w.get("level") == "warning" for w in warnings
    )
