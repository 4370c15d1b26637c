"""OperationRunner without gRPC: concurrency bounds, racing re-sends, recovery events."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.kit.catalogue import OperationSpec
from adapters.kit.events import EventLog
from adapters.kit.executors import MeshStatus, OperationEmitter
from adapters.kit.journal import OperationJournal
from adapters.kit.operations import (
    ClusterResult,
    ClusterTarget,
    OperationRecord,
    OperationRequest,
    OperationState,
    Severity,
)
from adapters.kit.runner import InvalidArgument, NotFound, OperationRunner, Unavailable
from tests.kit.toy_adapter import DECLARATION, Script, ScriptedExecutor, ToyVersions, eventually


def _runner(
    executor: object,
    *,
    state_dir: Path | None = None,
    max_concurrent: int = 4,
) -> tuple[OperationRunner, OperationJournal, EventLog]:
    journal = OperationJournal(state_dir=state_dir)
    events = EventLog(mesh="toy", state_dir=None if state_dir is None else state_dir / "events")
    runner = OperationRunner(
        DECLARATION,
        executor,  # type: ignore[arg-type]
        ToyVersions(),
        journal,
        events,
        max_concurrent=max_concurrent,
    )
    return runner, journal, events


def _state(journal: OperationJournal, operation_id: str) -> OperationState:
    record = journal.get(operation_id)
    assert record is not None
    return record.state


async def test_operations_beyond_the_concurrency_bound_wait_pending() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    runner, journal, _ = _runner(executor, max_concurrent=1)
    await runner.submit(OperationRequest(operation_id="one", operation="install"))
    await runner.submit(OperationRequest(operation_id="two", operation="sample"))
    await executor.wait_started("one")
    await asyncio.sleep(0.05)
    assert _state(journal, "two") is OperationState.PENDING
    assert executor.count("two") == 0
    gate.set()
    await eventually(lambda: _state(journal, "two") is OperationState.SUCCEEDED)
    assert _state(journal, "one") is OperationState.SUCCEEDED
    await runner.shutdown(1)


async def test_cancelling_a_pending_operation_never_runs_it() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    runner, journal, _ = _runner(executor, max_concurrent=1)
    await runner.submit(OperationRequest(operation_id="one", operation="install"))
    await runner.submit(OperationRequest(operation_id="two", operation="install"))
    record = await runner.cancel("two")
    assert record.state is OperationState.CANCELLED
    assert record.end_time is not None
    gate.set()
    await eventually(lambda: _state(journal, "one") is OperationState.SUCCEEDED)
    assert executor.count("two") == 0
    await runner.shutdown(1)


async def test_racing_resends_of_one_id_start_one_run() -> None:
    executor = ScriptedExecutor()
    runner, journal, _ = _runner(executor)
    request = OperationRequest(operation_id="dup", operation="install")
    outcomes = await asyncio.gather(*(runner.submit(request) for _ in range(5)))
    assert sorted(created for _, created in outcomes) == [False, False, False, False, True]
    await eventually(lambda: _state(journal, "dup") is OperationState.SUCCEEDED)
    assert executor.count("dup") == 1
    await runner.shutdown(1)


@dataclass
class _BadExecutor:
    """Returns a non-final state: the runner must not report it as success."""

    async def execute(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        emit: OperationEmitter,
    ) -> ClusterResult:
        emit(Severity.WARNING, "about to misbehave", component="toy")
        return ClusterResult(cluster="wrong-name", state=OperationState.RUNNING)

    async def status(self, target: ClusterTarget, namespace: str) -> MeshStatus:
        return MeshStatus(cluster=target.name, installed=False)


async def test_an_executor_reporting_a_non_final_state_fails_the_operation() -> None:
    runner, journal, events = _runner(_BadExecutor())
    await runner.submit(OperationRequest(operation_id="bad", operation="install"))
    await eventually(lambda: _state(journal, "bad") is OperationState.FAILED)
    record = journal.get("bad")
    assert record is not None and record.error is not None
    assert record.error.code == "INTERNAL"
    assert [r.cluster for r in record.cluster_results] == ["default"]
    warning = next(e for e in events.retained() if e.severity is Severity.WARNING)
    assert (warning.component, warning.cluster, warning.operation_state) == (
        "toy",
        "default",
        OperationState.RUNNING,
    )
    await runner.shutdown(1)


async def test_interrupted_records_found_on_open_are_announced(tmp_path: Path) -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    runner, _, events = _runner(executor, state_dir=tmp_path / "live")
    await runner.submit(OperationRequest(operation_id="mid", operation="install"))
    await executor.wait_started("mid")
    # What a kill leaves behind: the state directory as it is mid-run.
    shutil.copytree(tmp_path / "live", tmp_path / "killed")

    reopened, journal, reopened_events = _runner(ScriptedExecutor(), state_dir=tmp_path / "killed")
    assert _state(journal, "mid") is OperationState.INTERRUPTED
    last = reopened_events.retained()[-1]
    assert (last.operation_id, last.operation_state, last.severity) == (
        "mid",
        OperationState.INTERRUPTED,
        Severity.WARNING,
    )
    assert last.sequence == events.last_sequence + 1
    assert last.stream_id == events.stream_id
    for each in (runner, reopened):
        await each.shutdown(1)
    events.close()
    reopened_events.close()


async def test_after_shutdown_nothing_is_accepted() -> None:
    runner, _, _ = _runner(ScriptedExecutor())
    await runner.shutdown(1)
    with pytest.raises(Unavailable, match="shutting down"):
        await runner.submit(OperationRequest(operation_id="late", operation="install"))


async def test_request_errors_carry_the_field() -> None:
    runner, _, _ = _runner(ScriptedExecutor())
    with pytest.raises(InvalidArgument) as raised:
        await runner.submit(OperationRequest(operation_id="x", operation="install", namespace="-"))
    assert raised.value.field == "namespace"
    with pytest.raises(NotFound):
        await runner.cancel("nothing")
    await runner.shutdown(1)


async def test_shutdown_interrupts_running_and_never_started_work() -> None:
    gate = asyncio.Event()
    executor = ScriptedExecutor(scripts={"*": Script(gate=gate)})
    runner, journal, events = _runner(executor, max_concurrent=1)
    await runner.submit(OperationRequest(operation_id="one", operation="install"))
    await runner.submit(OperationRequest(operation_id="two", operation="install"))
    await runner.shutdown(1)
    assert _state(journal, "one") is OperationState.INTERRUPTED
    assert _state(journal, "two") is OperationState.INTERRUPTED
    assert runner.running == frozenset()
    finals = [
        e.operation_id for e in events.retained() if e.operation_state is OperationState.INTERRUPTED
    ]
    assert sorted(finals) == ["one", "two"]
