"""OperationRunner without gRPC: concurrency bounds, racing re-sends, recovery events."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.declare.standard_operations import custom_operation
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    OperationRecord,
    OperationRequest,
    OperationState,
    RequestedCluster,
    Severity,
)
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig, RequestKubeconfigPolicy
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.journal import OperationJournal
from adapters.kit.run.request_errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from adapters.kit.run.runner import OperationRunner
from adapters.kit.run.runner_settings import RunnerSettings
from adapters.kit.run.seam import MeshStatus, OperationEmitter
from tests.kit.judged_kubeconfigs import loopback_policy
from tests.kit.toy_adapter import DECLARATION, Script, ScriptedExecutor, ToyVersions, eventually

# The toy mesh with the kit's standard custom operation.
STANDARD_CUSTOM = dataclasses.replace(
    DECLARATION,
    operations=(
        *(o for o in DECLARATION.operations if o.id != "custom"),
        custom_operation(default_namespace="default"),
    ),
)


def _runner(
    executor: object,
    *,
    state_dir: Path | None = None,
    max_concurrent: int = 4,
    declaration: MeshDeclaration = DECLARATION,
    kubeconfig_policy: RequestKubeconfigPolicy | None = None,
    object_policy: ObjectPolicy | None = None,
) -> tuple[OperationRunner, OperationJournal, EventLog]:
    journal = OperationJournal(state_dir=state_dir)
    events = EventLog(mesh="toy", state_dir=None if state_dir is None else state_dir / "events")
    runner = OperationRunner(
        declaration,
        executor,  # type: ignore[arg-type]
        ToyVersions(),
        journal,
        events,
        settings=RunnerSettings(
            max_concurrent=max_concurrent,
            kubeconfig_policy=kubeconfig_policy or RequestKubeconfigPolicy(),
            object_policy=object_policy or ObjectPolicy(),
        ),
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

    async def prepare(self, target: ClusterTarget) -> None:
        return None


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


CLUSTER_ROLE = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
)
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"


def _custom(operation_id: str, body: str, **fields: object) -> OperationRequest:
    return OperationRequest(
        operation_id=operation_id,
        operation="custom",
        custom_body=body,
        **fields,  # type: ignore[arg-type]
    )


async def test_cluster_scoped_objects_are_refused_unless_the_operator_allows_them() -> None:
    executor = ScriptedExecutor()
    runner, journal, _ = _runner(executor, declaration=STANDARD_CUSTOM)
    body = CONFIG_MAP + "---\n" + CLUSTER_ROLE
    for attempt in range(2):  # re-sending the refused request changes nothing
        with pytest.raises(PermissionDenied) as denied:
            await runner.submit(_custom("cr", body))
        assert str(denied.value).startswith("custom_body: ClusterRole reader:")
        assert "--allow-elevated-objects" in str(denied.value), attempt
        assert journal.get("cr") is None
    # The request's old opt-in no longer elevates anything: it is refused by name.
    with pytest.raises(InvalidArgument) as raised:
        await runner.submit(_custom("cr", body, parameters={"allow_cluster_scoped": "true"}))
    assert raised.value.field == "parameters.allow_cluster_scoped"
    assert "--allow-elevated-objects" in str(raised.value)
    assert journal.get("cr") is None
    await runner.shutdown(1)

    allowed = ObjectPolicy(operator=PolicyGrant(elevated=True))
    runner, journal, _ = _runner(executor, declaration=STANDARD_CUSTOM, object_policy=allowed)
    record, created = await runner.submit(_custom("cr", body))
    assert created and record.grant.elevated and not record.grant.adopt
    await eventually(lambda: _state(journal, "cr") is OperationState.SUCCEEDED)
    assert executor.count("cr") == 1
    await runner.shutdown(1)


async def test_protected_namespaces_are_refused_at_the_door() -> None:
    runner, journal, _ = _runner(
        ScriptedExecutor(), object_policy=ObjectPolicy(protected_namespaces=frozenset({"vault"}))
    )
    with pytest.raises(PermissionDenied) as denied:
        await runner.submit(
            OperationRequest(operation_id="v", operation="sample", namespace="vault")
        )
    assert str(denied.value).startswith("namespace: namespace vault is protected")
    assert "--allow-protected-namespaces" in str(denied.value)
    assert journal.get("v") is None
    await runner.shutdown(1)


async def test_an_explicit_namespace_must_agree_with_the_objects() -> None:
    runner, journal, _ = _runner(ScriptedExecutor(), declaration=STANDARD_CUSTOM)
    body = CONFIG_MAP.replace("{name: settings}", "{name: settings, namespace: shop}")
    with pytest.raises(InvalidArgument) as raised:
        await runner.submit(_custom("ns", body, namespace="books"))
    assert raised.value.field == "custom_body"
    assert "'shop'" in str(raised.value) and "'books'" in str(raised.value)
    same, _ = await runner.submit(_custom("same", body, namespace="shop"))
    defaulted, _ = await runner.submit(_custom("defaulted", body))
    assert (same.namespace, defaulted.namespace) == ("shop", "default")
    await eventually(lambda: _state(journal, "defaulted") is OperationState.SUCCEEDED)
    await runner.shutdown(1)


async def test_kubeconfigs_are_checked_after_the_cluster_names() -> None:
    runner, journal, _ = _runner(ScriptedExecutor(), kubeconfig_policy=loopback_policy())
    clusters = (
        RequestedCluster(name="a", kubeconfig="apiVersion: v1\nkind: Config\n"),
        RequestedCluster(name="a"),
    )
    with pytest.raises(InvalidArgument) as raised:
        await runner.submit(
            OperationRequest(operation_id="k", operation="install", clusters=clusters)
        )
    assert raised.value.field == "clusters[1].name"
    with pytest.raises(InvalidArgument) as raised:
        await runner.submit(
            OperationRequest(operation_id="k", operation="install", clusters=clusters[:1])
        )
    assert raised.value.field == "clusters[0].kubeconfig"
    assert "`clusters` is missing" in str(raised.value)
    assert len(journal) == 0
    await runner.shutdown(1)


def _kubeconfig(server: str) -> str:
    return yaml.safe_dump(
        {
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


async def test_each_kubeconfig_verdict_has_its_own_error_and_nothing_runs() -> None:
    executor = ScriptedExecutor()
    good = _kubeconfig("http://127.0.0.1:6443")

    def request(operation_id: str, kubeconfig: str) -> OperationRequest:
        clusters = (RequestedCluster(name="a"), RequestedCluster(name="b", kubeconfig=kubeconfig))
        return OperationRequest(operation_id=operation_id, operation="install", clusters=clusters)

    off, journal, _ = _runner(executor)
    with pytest.raises(FailedPrecondition, match="does not accept kubeconfigs in requests"):
        await off.submit(request("off", good))
    on, journal, _ = _runner(executor, kubeconfig_policy=loopback_policy())
    with pytest.raises(PermissionDenied, match=r"clusters\[1\].kubeconfig: server 'https://"):
        await on.submit(request("far", _kubeconfig("https://10.1.2.3:6443")))
    with pytest.raises(InvalidArgument, match=r"users\[0\].user.tokenFile: names a file"):
        await on.submit(request("file", good.replace("token: t", "tokenFile: /etc/hostname")))
    assert len(journal) == 0 and executor.executions == []
    await on.submit(request("ok", good))
    await eventually(lambda: _state(journal, "ok") is OperationState.SUCCEEDED)
    seen = {e.cluster: e.kubeconfig for e in executor.executions}
    assert seen["a"] is None
    assert isinstance(seen["b"], JudgedKubeconfig)
    assert seen["b"].server == "http://127.0.0.1:6443"
    await off.shutdown(1)
    await on.shutdown(1)


@pytest.mark.timing  # a stall bound: run alone, where other tests cannot load the machine
async def test_the_loop_keeps_running_while_a_large_body_is_parsed() -> None:
    document = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c%d}\ndata: {a: b}\n---\n"
    body = "".join(document % n for n in range(1500))  # about 110 kB: a fraction of a second
    runner, _, _ = _runner(ScriptedExecutor(), declaration=STANDARD_CUSTOM)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []
    parsing = True

    async def tick() -> None:
        last = loop.time()
        while parsing:
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    async with asyncio.TaskGroup() as group:
        group.create_task(tick(), name="ticker")
        try:
            await runner.submit(_custom("big", body))
        finally:
            parsing = False
    assert len(gaps) >= 5, gaps
    assert max(gaps) < 0.2, f"the event loop stalled for {max(gaps):.2f}s"
    await runner.shutdown(1)


async def test_a_request_too_large_to_record_is_refused_before_it_runs() -> None:
    runner, journal, events = _runner(ScriptedExecutor())
    huge = OperationRequest(operation_id="huge", operation="install", username="u" * 5_000_000)
    with pytest.raises(InvalidArgument, match="shorten username") as refused:
        await runner.submit(huge)
    assert refused.value.field == "request"
    assert journal.get("huge") is None and events.last_sequence == 0
    # A large but recordable username is kept in the record; its event is cut to its budget.
    record, created = await runner.submit(
        OperationRequest(operation_id="big", operation="install", username="u" * 1_000_000)
    )
    assert created and len(record.username) == 1_000_000
    [accepted] = events.retained()
    assert "… [truncated " in accepted.details
    await runner.shutdown(1)
