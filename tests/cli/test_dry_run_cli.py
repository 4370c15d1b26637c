"""`meshplane apply --dry-run`, the real binary against a coordinator routing to the Istio adapter
subprocess on kubesim (toy charts): what would be created, changed or deleted, in each output
format, and the cluster and the history unchanged afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from adapters.kit.testing import MESHPLANE
from coordinator.client.credentials import TOKEN_ENV
from coordinator.server.settings import StaticAdapter
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.coordinator.identities import ADMIN
from tests.e2e.coordinator_harness import CoordinatorUnderTest, coordinator_settings
from tests.e2e.toy_istio_stack import ServerFactory, applied_objects, toy_istio_adapter


@dataclass
class Stack:
    sim: RunningSim
    coordinator: CoordinatorUnderTest

    async def cli(self, *argv: str) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            str(MESHPLANE),
            *argv,
            "--coordinator",
            self.coordinator.address,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, TOKEN_ENV: ADMIN.token, "NO_COLOR": "1"},
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def applied(self) -> set[tuple[str, str, str]]:
        return await applied_objects(self.sim)


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
async def stack(
    sim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> AsyncIterator[Stack]:
    adapter = toy_istio_adapter(sim, tmp_path, static_http_server)
    coordinator: CoordinatorUnderTest | None = None
    try:
        await adapter.start()
        assert adapter.process is not None
        settings = dataclasses.replace(
            coordinator_settings(tmp_path / "coord", []),
            adapters=(StaticAdapter(mesh="istio", address=adapter.process.address),),
        )
        coordinator = CoordinatorUnderTest(settings)
        await coordinator.start()
        await coordinator.wait_serving("istio")
        yield Stack(sim=sim, coordinator=coordinator)
    finally:
        if coordinator is not None:
            await coordinator.stop()
        await adapter.close()


def _changes(document: dict[str, object]) -> set[tuple[str, str, str, str]]:
    (cluster,) = document["dry_run_result"]["clusters"]  # type: ignore[index]
    return {
        (c["action"].removeprefix("OBJECT_CHANGE_ACTION_"), c["kind"], c["namespace"], c["name"])
        for c in cluster["changes"]
    }


async def assert_first_install_plans_creates_only(stack: Stack) -> None:
    """Before the install: JSON lists only creates, the table says the same; nothing applied."""
    code, out, err = await stack.cli(
        "apply", "istio", "install", "-p", "profile=default", "--dry-run", "-o", "json"
    )
    assert code == 0, err
    planned = _changes(json.loads(out))
    assert planned and {action for action, *_ in planned} == {"CREATE"}
    assert await stack.applied() == set()

    code, out, _ = await stack.cli(
        "apply", "istio", "install", "-p", "profile=default", "--dry-run"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ACTION",
        "KIND",
        "NAMESPACE",
        "NAME",
        "CHANGED",
        "FIELDS",
        "/",
        "NOTE",
    ]
    assert any(line.split()[:3] == ["create", "Namespace", "istio-system"] for line in lines)
    assert lines[-1] == (
        f"dry run on default: {len(planned)} to create, 0 to change, 0 to delete, 0 unchanged; "
        "nothing was changed"
    )


async def install(stack: Stack, profile: str) -> None:
    code, _, err = await stack.cli(
        "apply", "istio", "install", "-p", f"profile={profile}", "--wait"
    )
    assert code == 0, err


async def assert_profile_change_plans_what_the_upgrade_does(stack: Stack) -> None:
    """The YAML plan of default → demo names the updates, and its creates are what appears."""
    installed = await stack.applied()
    code, out, _ = await stack.cli(
        "apply", "istio", "install", "-p", "profile=demo", "--dry-run", "-o", "yaml"
    )
    assert code == 0
    changed = _changes(yaml.safe_load(out))
    assert {(a, k, n) for a, k, _, n in changed if a == "UPDATE"} == {
        ("UPDATE", "ConfigMap", "istio"),
        ("UPDATE", "Deployment", "istio-ingressgateway"),
    }
    assert await stack.applied() == installed
    await install(stack, "demo")
    created = await stack.applied() - installed
    assert {(k, ns, n) for a, k, ns, n in changed if a == "CREATE"} == created


async def assert_uninstall_plans_deleting_everything(stack: Stack) -> None:
    code, out, _ = await stack.cli(
        "apply", "istio", "install", "--delete", "--purge-crds", "--dry-run"
    )
    assert code == 0
    rows = [line.split() for line in out.splitlines()[1:-1]]
    everything = await stack.applied()
    assert {row[0] for row in rows} == {"delete"}
    assert len(rows) == len(everything)
    assert out.splitlines()[-1].startswith(
        f"dry run on default: 0 to create, 0 to change, {len(everything)} to delete"
    )


async def assert_history_holds_no_dry_run(stack: Stack) -> None:
    history = await stack.coordinator.stub.ListOperationHistory(
        cpb.ListOperationHistoryRequest(), timeout=5
    )
    assert len(history.operations) == 2  # the two real installs, no dry run
    assert all(not record.operation.dry_run for record in history.operations)


async def test_apply_dry_run_lists_creates_changes_and_deletes_and_changes_nothing(
    stack: Stack,
) -> None:
    await assert_first_install_plans_creates_only(stack)
    await install(stack, "default")
    await assert_profile_change_plans_what_the_upgrade_does(stack)
    await assert_uninstall_plans_deleting_everything(stack)
    await assert_history_holds_no_dry_run(stack)


async def test_a_refused_dry_run_exits_like_the_real_request(stack: Stack) -> None:
    code, _, err = await stack.cli("apply", "istio", "install", "-p", "profile=huge", "--dry-run")
    assert code == 2
    assert "--param profile" in err
    assert await stack.applied() == set()
