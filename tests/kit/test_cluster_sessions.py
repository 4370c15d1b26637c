"""ClusterSessions: one warm session per cluster, shared by operations, replaced when the
kubeconfig changes, never closed under a running operation."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from adapters.kit.apply.api_requests import RetrySettings
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.sessions import ClusterSessions
from adapters.kit.model.records import ClusterTarget
from kubesim.harness import RunningSim, running_kubesim
from kubesim.kubeconfig import write_kubeconfig
from kubesim.server import SimConfig
from tests.kit.judged_kubeconfigs import judged

DEFAULT = ClusterTarget(name="default")


def discovery_requests(sim: RunningSim) -> int:
    count: int = sim.call(lambda: sim.sim.api.requests["discovery"])
    return count


async def test_operations_share_one_warm_session(kubesim: RunningSim) -> None:
    sessions = ClusterSessions(kubeconfig=kubesim.kubeconfig)
    try:
        await sessions.warm(DEFAULT)
        warmed = discovery_requests(kubesim)
        async with sessions.lease(DEFAULT) as first:
            await first.api_versions()
        async with sessions.lease(DEFAULT) as second, sessions.lease(DEFAULT) as third:
            assert second is first and third is first
            await second.api_versions()
        # Each later look at discovery re-reads only the served group-versions (/api, /apis).
        assert discovery_requests(kubesim) - warmed == 4
    finally:
        await sessions.aclose()


async def test_a_request_kubeconfig_gets_its_own_session(kubesim: RunningSim) -> None:
    text = kubesim.kubeconfig.read_text()
    sessions = ClusterSessions(kubeconfig=kubesim.kubeconfig)
    try:
        async with sessions.lease(DEFAULT) as own:
            async with sessions.lease(ClusterTarget(name="b", kubeconfig=judged(text))) as given:
                assert given is not own
                assert given.name == "b"
                assert await given.server_version()
            # Judged again (the next request), the same document shares the session.
            async with sessions.lease(ClusterTarget(name="b", kubeconfig=judged(text))) as again:
                assert again is given
    finally:
        await sessions.aclose()


async def test_a_rewritten_kubeconfig_replaces_the_session(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", kubesim.url)
    sessions = ClusterSessions(kubeconfig=path)
    try:
        async with sessions.lease(DEFAULT) as before:
            assert await before.server_version()
            # Rotated credentials: the file is written again while an operation runs.
            write_kubeconfig(path, kubesim.url)
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
            async with sessions.lease(DEFAULT) as after:
                assert after is not before
            # The running operation keeps its session until it lets go.
            assert await before.server_version()
        with pytest.raises(RuntimeError):  # closed once released
            await before.server_version()
    finally:
        await sessions.aclose()


async def test_idle_sessions_beyond_the_bound_are_closed(kubesim: RunningSim) -> None:
    text = kubesim.kubeconfig.read_text()
    sessions = ClusterSessions(kubeconfig=kubesim.kubeconfig, max_idle=2)
    # Distinct texts make distinct sessions (a comment changes the digest).
    targets = [
        ClusterTarget(name=f"c{n}", kubeconfig=judged(f"{text}\n# c{n}\n")) for n in range(4)
    ]
    try:
        leased = []
        for target in targets:
            async with sessions.lease(target) as session:
                await session.server_version()
                leased.append(session)
        alive = []
        for session in leased:
            try:
                await session.server_version()
                alive.append(session.name)
            except RuntimeError:
                pass
        assert alive == ["c2", "c3"]
        assert len(sessions._connecting) == 2  # only the kept sessions keep a connect lock
    finally:
        await sessions.aclose()


async def test_stopping_waits_for_leased_sessions(kubesim: RunningSim) -> None:
    sessions = ClusterSessions(kubeconfig=kubesim.kubeconfig)
    async with sessions.lease(DEFAULT) as session:
        await sessions.aclose()
        assert await session.server_version()  # still usable by its operation
        with pytest.raises(RuntimeError, match="stopping"):
            async with sessions.lease(DEFAULT):
                pass
    with pytest.raises(RuntimeError):
        await session.server_version()


async def test_warming_an_unreachable_cluster_only_logs(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")
    sessions = ClusterSessions(kubeconfig=path, retry=RetrySettings(attempts=2, initial_delay=0.01))
    try:
        await asyncio.wait_for(sessions.warm(DEFAULT), timeout=60)
        with pytest.raises(ApplyError) as caught:
            async with sessions.lease(DEFAULT) as session:
                await session.server_version()
        assert caught.value.detail.code
    finally:
        await sessions.aclose()


async def test_a_kept_session_survives_an_api_server_restart(tmp_path: Path) -> None:
    # Pooled keep-alive connections die with the server; the next request reconnects.
    state = tmp_path / "state.json"
    with running_kubesim(SimConfig(ready_delay=0.0, state_file=state)) as first:
        port = int(first.url.rsplit(":", 1)[1])
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", first.url)
        sessions = ClusterSessions(
            kubeconfig=kubeconfig, retry=RetrySettings(attempts=4, initial_delay=0.01)
        )
        async with sessions.lease(DEFAULT) as session:
            await session.apply(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "kept", "namespace": "default"},
                    "data": {"a": "1"},
                }
            )
    try:
        with running_kubesim(SimConfig(ready_delay=0.0, state_file=state, port=port)):
            async with sessions.lease(DEFAULT) as again:
                assert again is session
                found = await again.get("v1", "ConfigMap", "kept", "default")
                assert found is not None and found["data"] == {"a": "1"}
    finally:
        await sessions.aclose()
