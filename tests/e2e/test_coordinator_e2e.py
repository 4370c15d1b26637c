"""The coordinator end to end: kubesim, adapter subprocesses, the coordinator, clients.

Installs go through the coordinator and events are watched through it; an adapter killed in
the middle of an operation and a restarted coordinator lose and repeat nothing (the client's
(stream, sequence) list equals the adapter's own replay); two coordinators sharing PostgreSQL
store each event once; the CLI and `meshplane up` work as a user runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import grpc
import grpc.aio
import pytest

from adapters.kit.apply.cluster import ClusterSession
from coordinator.store import open_store
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.adapter.v1 import adapter_pb2_grpc as apb_grpc
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from serving.mesh_entry_points import mesh_names
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.coordinator.identities import ADMIN
from tests.e2e.coordinator_harness import (
    Adapter,
    CoordinatorUnderTest,
    Watcher,
    coordinator_settings,
    finished,
    free_port_block,
)
from tests.fixtures_paths import shared_fixtures
from tests.meshplane_command import meshplane
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
SUCCEEDED = apb.OPERATION_STATE_SUCCEEDED


@pytest.fixture
def slow_sim() -> Iterator[RunningSim]:
    """Workloads take a second to become ready: an install lasts long enough to interrupt."""
    with running_kubesim(SimConfig(ready_delay=1.0, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
def fast_sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


def istio_adapter(
    sim: RunningSim, tmp_path: Path, serve: ServerFactory, name: str = "istio"
) -> Adapter:
    """The Istio adapter on the toy charts and mirror, with a state dir."""
    charts = serve(package_toy_repo(tmp_path / "charts"))
    mirror = serve(TOY_MIRROR)
    args = [
        "--kubeconfig",
        str(sim.kubeconfig),
        "--chart-repo",
        charts.url,
        "--manifests-url",
        mirror.url,
        "--state-dir",
        str(tmp_path / name / "state"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--operation-timeout",
        "60",
    ]
    return Adapter("istio", args, tmp_path / f"{name}.log")


@pytest.fixture
async def adapter_slow(
    slow_sim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> AsyncIterator[Adapter]:
    adapter = istio_adapter(slow_sim, tmp_path, static_http_server)
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.fixture
async def adapter_fast(
    fast_sim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> AsyncIterator[Adapter]:
    adapter = istio_adapter(fast_sim, tmp_path, static_http_server)
    await adapter.start()
    yield adapter
    await adapter.stop()


def install(operation_id: str) -> apb.ApplyOperationRequest:
    return apb.ApplyOperationRequest(
        operation_id=operation_id,
        operation="install",
        mesh_version="1.1.0",
        parameters={"profile": "demo"},
        username=ADMIN.user,  # the caller (the harness calls as the admin)
    )


def pairs(replies: list[cpb.WatchEventsResponse]) -> list[tuple[str, int]]:
    return [(r.event.event_stream_id, r.event.sequence) for r in replies]


async def test_install_through_the_coordinator_and_watch_it(
    adapter_fast: Adapter, tmp_path: Path
) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter_fast]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        response = await coordinator.apply("istio", install(""))
        operation_id = response.operation_id
        assert operation_id  # assigned by the coordinator
        watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest(operation_id=operation_id))
        watcher.start()
        try:
            await watcher.wait_for(finished(operation_id, SUCCEEDED), within=30)
        finally:
            await watcher.stop()
        progress = [r.event.component for r in watcher.received if r.event.component]
        assert "Deployment istio-system/istiod" in progress
        assert {r.adapter_address for r in watcher.received} == {adapter_fast.address}
        cursors = [r.cursor for r in watcher.received]
        assert cursors == sorted(set(cursors))

        record = await coordinator.stub.GetOperation(
            cpb.GetOperationRequest(operation_id=operation_id), timeout=5
        )
        assert record.operation.operation.state == SUCCEEDED
        history = await coordinator.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(mesh="istio"), timeout=5
        )
        assert [r.operation.operation_id for r in history.operations] == [operation_id]
        assert history.operations[0].operation.state == SUCCEEDED
        status = await coordinator.stub.GetMeshStatus(
            cpb.GetMeshStatusRequest(mesh="istio", request=apb.GetMeshStatusRequest()), timeout=10
        )
        assert status.status.installed and status.status.version == "1.1.0"
    finally:
        await coordinator.stop()


async def test_adapter_killed_mid_operation_loses_and_repeats_nothing(
    adapter_slow: Adapter, tmp_path: Path
) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter_slow]))
    await coordinator.start()
    watcher: Watcher | None = None
    try:
        await coordinator.wait_serving("istio")
        watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest(mesh="istio")).start()
        operation_id = "e2e-killed"
        await coordinator.apply("istio", install(operation_id))
        await watcher.wait_for(
            lambda r: r.event.operation_id == operation_id and r.event.summary.endswith("waiting"),
            within=30,
        )
        await adapter_slow.kill()
        await adapter_slow.start()  # same port, same state dir: the same event stream
        await coordinator.wait_serving("istio")
        await watcher.wait_for(finished(operation_id, apb.OPERATION_STATE_INTERRUPTED), within=30)
        again = await coordinator.apply("istio", install(operation_id))
        assert again.operation.operation.attempt == 2
        await watcher.wait_for(finished(operation_id, SUCCEEDED), within=30)

        replay = await adapter_slow.replay()
        expected = [(e.event_stream_id, e.sequence) for e in replay]
        received = pairs(watcher.received)
        assert len(set(received)) == len(received)
        assert received == expected  # nothing lost across the kill, nothing twice
        history = await coordinator.stub.GetOperation(
            cpb.GetOperationRequest(operation_id=operation_id), timeout=5
        )
        assert history.operation.operation.state == SUCCEEDED
    finally:
        if watcher is not None:
            await watcher.stop()
        await coordinator.stop()


async def test_restarted_coordinator_keeps_history_and_resumes_by_cursor(
    adapter_slow: Adapter, tmp_path: Path
) -> None:
    settings = coordinator_settings(tmp_path / "coord", [adapter_slow])
    first = CoordinatorUnderTest(settings)
    await first.start()
    operation_id = "e2e-across-restart"
    try:
        await first.wait_serving("istio")
        watcher = Watcher(first.stub, cpb.WatchEventsRequest(mesh="istio")).start()
        await first.apply("istio", install(operation_id))
        await watcher.wait_for(
            lambda r: r.event.operation_id == operation_id and r.event.summary.endswith("waiting"),
            within=30,
        )
        await watcher.stop()
        before = list(watcher.received)
    finally:
        await first.stop()
    await asyncio.sleep(0.5)  # the adapter goes on; the coordinator catches up after restart

    second = CoordinatorUnderTest(settings)
    await second.start()
    try:
        history = await second.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(), timeout=5
        )
        assert [r.operation.operation_id for r in history.operations] == [operation_id]
        resumed = Watcher(
            second.stub, cpb.WatchEventsRequest(mesh="istio", after_cursor=before[-1].cursor)
        ).start()
        try:
            await resumed.wait_for(finished(operation_id, SUCCEEDED), within=30)
        finally:
            await resumed.stop()
        received = before + resumed.received
        cursors = [r.cursor for r in received]
        assert cursors == sorted(set(cursors))
        replay = await adapter_slow.replay()
        assert pairs(received) == [(e.event_stream_id, e.sequence) for e in replay]
        assert received[-1].event.operation_state == SUCCEEDED

        async def final_state() -> int:
            reply = await second.stub.ListOperationHistory(
                cpb.ListOperationHistoryRequest(), timeout=5
            )
            return int(reply.operations[0].operation.state)

        async with asyncio.timeout(10):
            while await final_state() != SUCCEEDED:  # noqa: ASYNC110 - polling a server
                await asyncio.sleep(0.05)
    finally:
        await second.stop()


@pytest.mark.postgres
async def test_two_coordinators_on_one_postgres_store_each_event_once(
    adapter_fast: Adapter, tmp_path: Path, fresh_postgres_url: str
) -> None:
    coordinators = [
        CoordinatorUnderTest(
            coordinator_settings(tmp_path / name, [adapter_fast], store=fresh_postgres_url)
        )
        for name in ("one", "two")
    ]
    for coordinator in coordinators:
        await coordinator.start()
    watchers: list[Watcher] = []
    try:
        for coordinator in coordinators:
            await coordinator.wait_serving("istio")
        watchers = [
            Watcher(c.stub, cpb.WatchEventsRequest(mesh="istio")).start() for c in coordinators
        ]
        operation_id = "e2e-shared-store"
        await coordinators[0].apply("istio", install(operation_id))
        for watcher in watchers:
            await watcher.wait_for(finished(operation_id, SUCCEEDED), within=30)
        replay = await adapter_fast.replay()
        expected = [(e.event_stream_id, e.sequence) for e in replay]

        store = open_store(fresh_postgres_url)
        try:
            stored = await store.events_after(0, None, 1000)
        finally:
            await store.close()
        stored_pairs = [(s.event.payload["event_stream_id"], s.event.sequence) for s in stored]
        assert sorted(stored_pairs) == sorted(expected)  # every event, none twice
        for watcher in watchers:
            assert pairs(watcher.received) == expected
            assert [r.cursor for r in watcher.received] == sorted(s.cursor for s in stored)
    finally:
        for watcher in watchers:
            await watcher.stop()
        for coordinator in coordinators:
            await coordinator.stop()


async def test_cli_against_the_coordinator(adapter_fast: Adapter, tmp_path: Path) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter_fast]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        at = ["--coordinator", coordinator.address, "--token", ADMIN.token]

        code, out, err = await meshplane("apply", "istio", "validate", "--wait", *at)
        assert code == 1, (out, err)
        assert "VALIDATION_FAILED" in err and "remediation:" in err

        code, out, err = await meshplane(
            "apply", "istio", "install", "--version", "1.1.0", "-p", "profile=demo", "--wait",
            "--operation-id", "cli-install", "--output", "json", *at,
        )  # fmt: skip
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[-1]["operation"]["operation"]["state"] == "OPERATION_STATE_SUCCEEDED"
        progress = [line for line in lines if "cursor" in line]
        assert progress and all(p["event"]["operation_id"] == "cli-install" for p in progress)

        code, out, err = await meshplane("apply", "istio", "install", "--version", "9.9.9", *at)
        assert code == 2 and "9.9.9" in err  # INVALID_ARGUMENT: a usage error

        code, out, _ = await meshplane("adapters", *at)
        assert code == 0
        header, row = out.splitlines()[:2]
        assert header.split()[:3] == ["MESH", "ADDRESS", "STATE"]
        assert row.split()[:3] == ["istio", adapter_fast.address, "SERVING"]

        code, out, _ = await meshplane("history", "--state", "succeeded", "-o", "json", *at)
        assert code == 0
        ids = [op["operation"]["operation_id"] for op in json.loads(out)["operations"]]
        assert ids == ["cli-install"]

        code, out, _ = await meshplane("events", "--operation", "cli-install", "-o", "json", *at)
        events = [json.loads(line) for line in out.splitlines()]
        assert [e["cursor"] for e in events] == [p["cursor"] for p in progress]
        code, out, _ = await meshplane(
            "events", "--operation", "cli-install", "--after", events[-2]["cursor"], *at
        )
        lines = out.splitlines()  # the header, then the one event after that cursor
        assert code == 0 and len(lines) == 2 and lines[0].split()[0] == "CURSOR"
        assert "install succeeded" in lines[1]

        code, out, _ = await meshplane("versions", "istio", *at)
        assert code == 0 and "1.1.0 (default)" in out
        code, out, _ = await meshplane("status", "istio", *at)
        assert code == 0 and "installed:  yes" in out and "istiod" in out
        code, out, _ = await meshplane("ops", "istio", "-o", "json", *at)
        catalogue = json.loads(out)["catalogues"][0]
        assert "install" in [op["id"] for op in catalogue["operations"]]
    finally:
        await coordinator.stop()


@contextlib.asynccontextmanager
async def cli_flags(adapter: Adapter, tmp_path: Path) -> AsyncIterator[list[str]]:
    """A coordinator in front of ``adapter``; yields the CLI flags that reach it as the admin."""
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        yield ["--coordinator", coordinator.address, "--token", ADMIN.token]
    finally:
        await coordinator.stop()


async def test_cli_label_namespace_creates_no_namespace_unless_asked(
    adapter_fast: Adapter, fast_sim: RunningSim, tmp_path: Path
) -> None:
    """Issue 15: `label-namespace --namespace nope` created nope; `--create-namespace` asks."""
    async with cli_flags(adapter_fast, tmp_path) as at:
        label = ["apply", "istio", "label-namespace", "--namespace", "nope", "--wait"]

        code, out, err = await meshplane(*label, *at)
        assert code == 1, (out, err)
        assert "namespace 'nope' does not exist; pass --create-namespace" in err, err
        async with await ClusterSession.connect(kubeconfig_path=fast_sim.kubeconfig) as session:
            assert await session.get("v1", "Namespace", "nope") is None

        code, out, err = await meshplane(*label, "--create-namespace", *at)
        assert code == 0, (out, err)
        async with await ClusterSession.connect(kubeconfig_path=fast_sim.kubeconfig) as session:
            created = await session.get("v1", "Namespace", "nope")
        assert created is not None
        assert created["metadata"]["labels"]["istio-injection"] == "enabled"


async def test_cli_uninstall_keeps_crds_unless_purge_crds(
    adapter_fast: Adapter, fast_sim: RunningSim, tmp_path: Path
) -> None:
    async with cli_flags(adapter_fast, tmp_path) as at:
        install = ["apply", "istio", "install", "--version", "1.1.0"]

        code, out, err = await meshplane(*install, "--purge-crds", *at)
        assert code == 2 and "--purge-crds only applies with --delete" in err, (out, err)
        code, out, err = await meshplane(*install, "--delete", "--param", "purge-crds=maybe", *at)
        assert code == 2, (out, err)
        assert "--param purge-crds: 'maybe' is not one of true, false, force" in err, err

        code, out, err = await meshplane(*install, "--wait", *at)
        assert code == 0, err
        code, out, err = await meshplane(*install, "--delete", "--wait", *at)
        assert code == 0, err
        assert "CustomResourceDefinitions of release istio-install" in out + err, out
        assert "--param purge-crds=true" in out + err, out
        async with await ClusterSession.connect(kubeconfig_path=fast_sim.kubeconfig) as session:
            assert await session.has_kind("networking.istio.io/v1", "VirtualService")

        code, out, err = await meshplane(*install, "--delete", "--purge-crds", "--wait", *at)
        assert code == 0, err
        async with await ClusterSession.connect(kubeconfig_path=fast_sim.kubeconfig) as session:
            assert not await session.has_kind("networking.istio.io/v1", "VirtualService")


async def test_cli_explains_an_unreachable_coordinator() -> None:
    port = free_port_block(1)
    code, _, err = await meshplane("adapters", "--coordinator", f"127.0.0.1:{port}")
    assert code == 4
    assert "UNAVAILABLE" in err and "meshplane up" in err
    assert f"127.0.0.1:{port}" in err
    other = free_port_block(1)
    code, _, err = await meshplane(
        "ops", within=30, env={"MESHPLANE_COORDINATOR": f"127.0.0.1:{other}"}
    )
    assert code == 4 and f"127.0.0.1:{other}" in err


def _refused(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def test_meshplane_up_serves_and_stops_cleanly(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    package_toy_repo(mirror / "charts" / "istio")
    for folder in ("apps", "addons"):
        (mirror / folder).symlink_to(TOY_MIRROR / folder)
    base = free_port_block(3 + len(mesh_names()))
    up_log = tmp_path / "up.log"
    with up_log.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "meshplane_cli.main", "up",
            "--data-dir", str(tmp_path / "data"), "--mirror", str(mirror),
            "--port-base", str(base), "--mesh", "istio", "--mesh", "nomesh",
            stdout=asyncio.subprocess.PIPE, stderr=log_file,
        )  # fmt: skip
    assert process.stdout is not None
    banner: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not banner or not banner[-1].startswith("Ctrl-C"):
                line = await process.stdout.readline()
                assert line, f"up exited: {up_log.read_text()}"
                banner.append(line.decode().rstrip())
        text = "\n".join(banner)
        istio_port = base + 2 + mesh_names().index("istio")  # a fixed port per registered mesh
        assert f"127.0.0.1:{base}" in text and f"127.0.0.1:{istio_port}" in text
        assert "nomesh adapter" in text and "skipped" in text
        assert "try:  meshplane ops istio" in text

        code, out, err = await meshplane("ops", "istio", "--coordinator", f"127.0.0.1:{base}")
        assert code == 0, err
        assert "install" in out
        code, out, err = await meshplane(
            "apply", "istio", "install", "--wait", "--coordinator", f"127.0.0.1:{base}"
        )
        assert code == 0, err
        assert "SUCCEEDED" in out
        # the adapter serves only its coordinator (the link token `up` wrote, 0600)
        link_token = tmp_path / "data" / "link-token"
        assert link_token.stat().st_mode & 0o777 == 0o600
        async with grpc.aio.insecure_channel(f"127.0.0.1:{istio_port}") as direct:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await apb_grpc.MeshAdapterServiceStub(direct).ListOperations(
                    apb.ListOperationsRequest(), timeout=10
                )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 0
    for port in (base, base + 1, base + 2):
        assert _refused(port), f"port {port} still served after up stopped"
    assert (tmp_path / "data" / "kubesim" / "state.json").exists()
    assert (tmp_path / "data" / "coordinator" / "coordinator.db").exists()


def _declared_meshes() -> list[str]:
    return [
        mesh
        for mesh in mesh_names()
        if importlib.util.find_spec(f"adapters.{mesh}.declaration") is not None
    ]


async def test_every_declared_adapter_behind_one_coordinator(
    fast_sim: RunningSim, tmp_path: Path
) -> None:
    fixtures = shared_fixtures()
    adapters = [
        Adapter(
            mesh,
            [
                "--kubeconfig",
                str(fast_sim.kubeconfig),
                "--mirror",
                str(fixtures),
                "--state-dir",
                str(tmp_path / mesh),
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            tmp_path / f"{mesh}.log",
        )
        for mesh in _declared_meshes()
    ]
    await asyncio.gather(*(adapter.start() for adapter in adapters))
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", adapters))
    await coordinator.start()
    try:
        for adapter in adapters:
            await coordinator.wait_serving(adapter.mesh)
        listing = await coordinator.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
        assert [a.mesh for a in listing.adapters] == sorted(a.mesh for a in adapters)
        catalogues = await coordinator.stub.ListOperations(cpb.ListOperationsRequest(), timeout=5)
        assert all(c.operations for c in catalogues.catalogues)
        for adapter in adapters:
            versions = await coordinator.stub.ListMeshVersions(
                cpb.ListMeshVersionsRequest(mesh=adapter.mesh), timeout=10
            )
            assert len(versions.versions) == 2, adapter.mesh  # two releases per mesh mirrored

        # Every mesh installed at once through the one coordinator, watched through it.
        watcher = Watcher(coordinator.stub, cpb.WatchEventsRequest()).start()
        try:
            for adapter in adapters:
                await coordinator.apply(
                    adapter.mesh,
                    apb.ApplyOperationRequest(
                        operation_id=f"all-{adapter.mesh}", operation="install"
                    ),
                )
            for adapter in adapters:
                await watcher.wait_for(finished(f"all-{adapter.mesh}", SUCCEEDED), within=60)
        finally:
            await watcher.stop()
        for adapter in adapters:
            replay = await adapter.replay()
            mine = [r for r in watcher.received if r.mesh == adapter.mesh]
            assert pairs(mine) == [(e.event_stream_id, e.sequence) for e in replay]
            assert {r.adapter_address for r in mine} == {adapter.address}
    finally:
        await coordinator.stop()
        await asyncio.gather(*(adapter.stop() for adapter in adapters))


async def _in_a_terminal(*args: str, env: dict[str, str], within: float = 120.0) -> tuple[int, str]:
    """`meshplane ARGS` with a pseudo-terminal as stdout/stderr; (exit code, all it wrote)."""
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshplane_cli.main",
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env={key: value for key, value in {**os.environ, **env}.items() if value},
        )
    finally:
        os.close(slave)
    loop = asyncio.get_running_loop()
    written = bytearray()
    closed = asyncio.Event()

    def readable() -> None:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            chunk = b""
        if chunk:
            written.extend(chunk)
        else:
            closed.set()

    loop.add_reader(master, readable)
    try:
        await asyncio.wait_for(closed.wait(), within)
        code = await asyncio.wait_for(process.wait(), within)
    finally:
        loop.remove_reader(master)
        os.close(master)
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, written.decode(errors="replace")


async def test_cli_shows_one_line_per_phase(adapter_fast: Adapter, tmp_path: Path) -> None:
    coordinator = CoordinatorUnderTest(coordinator_settings(tmp_path / "coord", [adapter_fast]))
    await coordinator.start()
    try:
        await coordinator.wait_serving("istio")
        at = ["--coordinator", coordinator.address, "--token", ADMIN.token]
        install = ["apply", "istio", "install", "--version", "1.1.0", "-p", "profile=demo"]

        # On a terminal: a live line rewritten in place, one line left per phase, in colour.
        code, text = await _in_a_terminal(*install, "--wait", *at, env={"NO_COLOR": ""})
        assert code == 0, text
        assert "\r\x1b[2K" in text and "\x1b[32mdone\x1b[0m apply " in text
        # what stays on the screen: each line after its last in-place rewrite
        finished = [line.split("\x1b[2K")[-1] for line in text.replace("\r\n", "\n").split("\n")]
        phases = [line for line in finished if "done" in line]
        assert [p.split()[1] for p in phases][:3] == ["render", "apply", "ready"], finished
        # tiers may return to a phase; its counts carry on, so the last apply line is complete
        last_apply = [p.split()[2] for p in phases if p.split()[1] == "apply"][-1]
        total = int(last_apply.split("/")[1])
        assert last_apply == f"{total}/{total}" and total > 10
        assert len([line for line in finished if line.strip()]) < 12  # not one per object
        assert any(line.startswith("operation ") and "SUCCEEDED" in line for line in finished)

        # errors speak the CLI's words, with a suggestion for a near miss
        code, _, err = await meshplane("apply", "istio", "instal", *at)
        assert code == 3 and "did you mean 'install'?" in err, err
        code, _, err = await meshplane(*install[:3], "-p", "profile=nope", *at)
        assert code == 2 and "--param profile" in err and "parameters." not in err, err

        # NO_COLOR: the same lines without colour
        code, text = await _in_a_terminal(*install, "--wait", *at, env={"NO_COLOR": "1"})
        assert code == 0, text
        assert "\x1b[3" not in text and "done apply" in text

        # In a pipe: plain lines, no rewriting; -v adds every object's step
        code, out, err = await meshplane(*install, "--wait", *at)
        assert code == 0, err
        assert "\r" not in out and out.splitlines()[2].startswith("done apply "), out
        code, out, err = await meshplane(*install, "--wait", "-v", *at)
        assert code == 0, err
        assert "  - cluster default: Deployment istio-system/istiod unchanged" in out
    finally:
        await coordinator.stop()
