"""The audit trail: a scripted session read back with `meshplane audit`, retention, the store."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from coordinator.client.channel import EXIT_DENIED
from coordinator.store import AuditFilter, AuditRecord, open_store
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane.coordinator.v1 import coordinator_pb2_grpc as cpb_grpc
from tests.coordinator.identities import ADMIN, CALLERS, Caller, channel_as
from tests.coordinator.routing_harness import Client, coordinator, fakes, make_settings, static
from tests.meshplane_command import meshplane

APPLY = "/meshplane.coordinator.v1.CoordinatorService/ApplyOperation"
CANCEL = "/meshplane.coordinator.v1.CoordinatorService/CancelOperation"


async def _as(client: Client, caller: Caller | None) -> Any:
    return channel_as(client.coordinator.address, caller)


async def _cli(client: Client, caller: Caller, *argv: str) -> tuple[int, str, str]:
    address = client.coordinator.address
    return await meshplane(*argv, "--coordinator", address, "--token", caller.token)


async def test_a_scripted_session_is_read_back_with_meshplane_audit(tmp_path: Path) -> None:
    async with fakes(("istio", "a")) as (adapter,):
        adapter.fake.catalogue[0].default_namespace = "istio-system"
        async with coordinator(make_settings(tmp_path, adapters=static(adapter))) as client:
            await client.wait_serving(adapter.address)
            await run_scripted_calls(client)
            await assert_audit_shows_each_call(client)
            await assert_audit_filters(client)
            await assert_only_admins_read_the_trail(client)


async def run_scripted_calls(client: Client) -> None:
    """ada installs (allowed), vera tries to (denied), otto cancels ada's operation (denied),
    someone without a token lists adapters (unauthenticated), ada cancels her own (allowed),
    and reading history (allowed, not mutating) leaves no record."""
    operator, viewer = CALLERS["operator"], CALLERS["viewer"]
    code, _, err = await _cli(
        client, ADMIN, "apply", "istio", "install", "--operation-id", "inst-1"
    )
    assert code == 0, err
    code, _, err = await _cli(client, viewer, "apply", "istio", "install")
    assert code == EXIT_DENIED and "PERMISSION_DENIED" in err and "create meshes" in err
    code, _, err = await _cli(client, operator, "history")
    assert code == 0
    async with await _as(client, operator) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await cpb_grpc.CoordinatorServiceStub(channel).CancelOperation(
                cpb.CancelOperationRequest(operation_id="inst-1"), timeout=5
            )
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "update operations/others" in denied.value.details()
    async with await _as(client, None) as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await cpb_grpc.CoordinatorServiceStub(channel).ListAdapters(
                cpb.ListAdaptersRequest(), timeout=5
            )
    async with await _as(client, ADMIN) as channel:
        await cpb_grpc.CoordinatorServiceStub(channel).CancelOperation(
            cpb.CancelOperationRequest(operation_id="inst-1"), timeout=5
        )


async def assert_audit_shows_each_call(client: Client) -> None:
    """`meshplane audit` lists the five mutating calls in order, with who, where and why."""
    code, out, err = await _cli(client, ADMIN, "audit", "-o", "json")
    assert code == 0, err
    records = json.loads(out)["records"]
    seen = [
        (r["subject"], r["method"].rsplit("/", 1)[-1], r["decision"], r["outcome"])
        for r in reversed(records)
    ]
    assert seen == [
        ("ada", "ApplyOperation", "AUDIT_DECISION_ALLOWED", "OK"),
        ("vera", "ApplyOperation", "AUDIT_DECISION_DENIED", "PERMISSION_DENIED"),
        ("otto", "CancelOperation", "AUDIT_DECISION_DENIED", "PERMISSION_DENIED"),
        ("", "ListAdapters", "AUDIT_DECISION_UNAUTHENTICATED", "UNAUTHENTICATED"),
        ("ada", "CancelOperation", "AUDIT_DECISION_ALLOWED", "OK"),
    ]
    first = records[-1]
    assert first["mesh"] == "istio" and first["operation_id"] == "inst-1"
    assert first["namespace"] == "istio-system"
    assert first["groups"] == ["meshplane:admins"] and first["uid"] == "uid-ada"
    assert first["authenticated_by"] == "token-file"
    assert first["source_address"].startswith("ipv4:127.0.0.1:")
    denial = records[-2]
    assert "create meshes (meshplane.io) in namespace istio-system" in denial["reason"]


async def assert_audit_filters(client: Client) -> None:
    """Filters: by user, by decision; the table for people."""
    _, out, _ = await _cli(client, ADMIN, "audit", "--user", "otto", "-o", "json")
    assert [r["method"] for r in json.loads(out)["records"]] == [CANCEL]
    _, out, _ = await _cli(
        client, ADMIN, "audit", "--decision", "denied", "--since", "1h", "-o", "json"
    )
    assert {r["subject"] for r in json.loads(out)["records"]} == {"vera", "otto"}
    _, out, _ = await _cli(client, ADMIN, "audit", "--limit", "2")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["TIME", "USER", "METHOD"] and len(lines) == 3
    assert "CancelOperation" in lines[1] and "ALLOWED" in lines[1]


async def assert_only_admins_read_the_trail(client: Client) -> None:
    """Only admins read the trail; the refusal is itself recorded."""
    code, _, err = await _cli(client, CALLERS["operator"], "audit")
    assert code == EXIT_DENIED and "PERMISSION_DENIED" in err and "list auditrecords" in err
    _, out, _ = await _cli(client, ADMIN, "audit", "--limit", "1", "-o", "json")
    assert json.loads(out)["records"][0]["subject"] == "otto"


async def test_audit_records_are_pruned_by_count(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings = replace(
        settings,
        audit_retention_count=3,
        retention=replace(settings.retention, interval_seconds=0.05),
    )
    async with coordinator(settings, caller=CALLERS["viewer"]) as client:
        for _ in range(6):  # each one a denial, so each one a record
            with pytest.raises(grpc.aio.AioRpcError):
                await client.stub.RegisterAdapter(
                    cpb.RegisterAdapterRequest(address="127.0.0.1:9"), timeout=5
                )
        store = client.coordinator.store
        async with asyncio.timeout(10):
            while True:  # pruning runs in the background every 50 ms
                if len((await store.list_audit_records())[0]) <= 3:
                    break
                await asyncio.sleep(0.05)
        kept, _ = await store.list_audit_records()
        assert len(kept) == 3 and all(r.decision == "deny" for r in kept)


def _record(n: int, *, subject: str = "ada", at: datetime | None = None) -> AuditRecord:
    return AuditRecord(
        recorded_at=at or datetime(2026, 3, 1, 12, 0, n, tzinfo=UTC),
        subject=subject,
        groups=("meshplane:admins",),
        method=APPLY,
        mesh="istio",
        operation_id=f"op-{n}",
        decision="allow" if n % 2 else "deny",
        outcome="OK" if n % 2 else "PERMISSION_DENIED",
        reason="x" * 2000,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_store_keeps_pages_filters_and_prunes_audit_records(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = (
        str(tmp_path / "audit.db")
        if backend == "sqlite"
        else str(request.getfixturevalue("fresh_postgres_url"))
    )
    store = open_store(location)
    await store.migrate()
    try:
        stored = [await store.append_audit_record(_record(n)) for n in range(1, 8)]
        assert [r.record_id for r in stored] == sorted({r.record_id for r in stored})
        assert len(stored[0].reason) == 1000 and stored[0].reason.endswith("...")
        page, token = await store.list_audit_records(page_size=3)
        assert [r.operation_id for r in page] == ["op-7", "op-6", "op-5"] and token
        rest, token = await store.list_audit_records(page_size=10, page_token=token)
        assert [r.operation_id for r in rest] == ["op-4", "op-3", "op-2", "op-1"] and not token
        assert rest[-1] == stored[0]
        denied, _ = await store.list_audit_records(AuditFilter(decision="deny"))
        assert [r.operation_id for r in denied] == ["op-6", "op-4", "op-2"]
        window = AuditFilter(
            since=datetime(2026, 3, 1, 12, 0, 2, tzinfo=UTC),
            until=datetime(2026, 3, 1, 12, 0, 4, tzinfo=UTC),
        )
        assert [r.operation_id for r in (await store.list_audit_records(window))[0]] == [
            "op-3",
            "op-2",
        ]
        with pytest.raises(ValueError, match="invalid audit page token"):
            await store.list_audit_records(page_token="nope")
        gone = await store.prune_audit_records(
            older_than=datetime(2026, 3, 1, 12, 0, 3, tzinfo=UTC)
        )
        assert gone == 2
        assert await store.prune_audit_records(keep_newest=2) == 3
        left, _ = await store.list_audit_records()
        assert [r.operation_id for r in left] == ["op-7", "op-6"]
        now = datetime.now(UTC)
        await store.append_audit_record(_record(9, at=now - timedelta(days=40)))
        assert await store.prune_audit_records(older_than=now - timedelta(days=30)) == 3
        assert (await store.list_audit_records())[0] == []
    finally:
        await store.close()
