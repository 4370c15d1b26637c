"""Client commands against an in-process coordinator: history ranges and paging, events for an
unknown operation, perf results as an object, and a reader that goes away (``| head``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from coordinator.perf.service import DOCUMENT_FORMAT
from coordinator.store import OperationRecord
from coordinator.store.records import PerfResultRecord
from meshplane_cli.main import main
from tests.coordinator.identities import ADMIN
from tests.coordinator.routing_harness import Client, coordinator, make_settings
from tests.meshplane_command import meshplane

NOW = datetime.now(UTC).replace(microsecond=0)


def _record(operation_id: str, *, hours_ago: float) -> OperationRecord:
    when = NOW - timedelta(hours=hours_ago)
    return OperationRecord(
        operation_id=operation_id,
        mesh="istio",
        operation="install",
        state="succeeded",
        username="ada",
        request={"operation": "install"},
        cluster_results=[],
        error=None,
        adapter="127.0.0.1:1",
        created_at=when,
        updated_at=when,
    )


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[Client]:
    """A coordinator with five operations recorded 0.5 h, 1.5 h, ... 4.5 h ago."""
    async with coordinator(make_settings(tmp_path)) as running:
        for n in range(5):
            await running.coordinator.store.save_operation(_record(f"op-{n}", hours_ago=n + 0.5))
        yield running


async def _cli(client: Client, *argv: str) -> tuple[int, str, str]:
    address = client.coordinator.address
    return await meshplane(*argv, "--coordinator", address, "--token", ADMIN.token)


async def test_history_time_range_relative_and_iso(client: Client) -> None:
    code, out, _ = await _cli(client, "history", "--since", "2h", "-o", "json")
    assert code == 0
    assert [o["operation"]["operation_id"] for o in json.loads(out)["operations"]] == [
        "op-0",
        "op-1",
    ]
    until = (NOW - timedelta(hours=3)).isoformat()
    code, out, _ = await _cli(client, "history", "--until", until, "-o", "json")
    assert code == 0
    assert [o["operation"]["operation_id"] for o in json.loads(out)["operations"]] == [
        "op-3",
        "op-4",
    ]
    naive = (NOW - timedelta(hours=4)).replace(tzinfo=None).isoformat()  # read as UTC
    code, out, _ = await _cli(client, "history", "--since", naive, "--until", "1h", "-o", "json")
    assert [o["operation"]["operation_id"] for o in json.loads(out)["operations"]] == [
        "op-1",
        "op-2",
        "op-3",
    ]


async def test_history_end_before_start_is_invalid_argument(client: Client) -> None:
    code, _, err = await _cli(client, "history", "--since", "1h", "--until", "3h")
    assert code == 2  # the coordinator found the input invalid: a usage error
    assert "INVALID_ARGUMENT" in err and "is before start_time" in err


async def test_history_pages_with_a_token_or_all(client: Client) -> None:
    code, out, _ = await _cli(client, "history", "--limit", "2", "-o", "json")
    first = json.loads(out)
    assert [o["operation"]["operation_id"] for o in first["operations"]] == ["op-0", "op-1"]
    token = first["next_page_token"]
    assert token

    code, out, err = await _cli(client, "history", "--limit", "2", "--page-token", token)
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["op-2", "op-3"]
    assert "more: meshplane history --page-token " in err

    code, out, _ = await _cli(client, "history", "--limit", "1", "--all", "-o", "json")
    every = json.loads(out)
    assert len(every["operations"]) == 5 and every["next_page_token"] == ""


def test_history_state_help_lists_only_real_states(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["history", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "{pending,running,succeeded,failed,cancelled,interrupted}" in help_text
    assert "{," not in help_text


async def test_events_for_an_unknown_operation_fail_naming_it(client: Client) -> None:
    code, out, err = await _cli(client, "events", "--operation", "nope")
    assert code == 3 and out == ""  # not found
    assert "NOT_FOUND" in err and "'nope'" in err
    code, _, _ = await _cli(client, "events", "--operation", "op-0", "--idle", "0.2")
    assert code == 0


async def test_perf_results_json_is_an_object(client: Client) -> None:
    started = "2026-01-01T00:00:00Z"
    result = {"id": "r-1", "test_id": "t-1", "start_time": started, "end_time": started}
    await client.coordinator.store.save_perf_result(
        PerfResultRecord(
            result_id="r-1",
            test_id="t-1",
            name="load r-1",
            mesh="istio",
            created_at=NOW,
            labels={},
            document={"format": DOCUMENT_FORMAT, "result": result},
        )
    )
    code, out, _ = await _cli(client, "perf", "results", "-o", "json")
    assert code == 0
    document = json.loads(out)
    assert isinstance(document, dict)
    assert [r["id"] for r in document["results"]] == ["r-1"]


async def test_a_reader_that_goes_away_ends_the_command_quietly(client: Client) -> None:
    # The pipe's read end is closed before the command writes: every write fails with EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from meshplane_cli.main import main; sys.exit(main())",
            "history",
            "-o",
            "json",
            "--coordinator",
            client.coordinator.address,
            "--token",
            ADMIN.token,
            stdout=write_end,
            stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert err.decode() == ""
    assert process.returncode == 141
