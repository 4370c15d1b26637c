"""`meshplane template MESH OP`, the real binary against a coordinator routing RenderOperation to
the Istio adapter subprocess on kubesim: our toy charts, and the upstream charts from
../shared/fixtures when present. The output is YAML documents of the kinds the operation applies;
nothing is applied; Secret values never come back."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.kit.testing import MESHPLANE
from coordinator.client.credentials import TOKEN_ENV
from coordinator.server.settings import StaticAdapter
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.coordinator.identities import ADMIN, CALLERS
from tests.e2e.coordinator_harness import CoordinatorUnderTest, coordinator_settings
from tests.e2e.mesh_harness import MeshHarness
from tests.e2e.toy_istio_stack import ServerFactory, applied_objects, toy_istio_adapter
from tests.fixtures_paths import shared_fixtures

INSTALL_KINDS = {
    "CustomResourceDefinition",
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}
"""Kinds an Istio install applies, whichever charts (toy or upstream)."""


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


def _upstream(sim: RunningSim, tmp_path: Path, serve: ServerFactory) -> MeshHarness:
    fixtures = shared_fixtures()  # skips with the reason when ../shared/fixtures is absent
    return MeshHarness(
        "istio",
        sim,
        tmp_path,
        charts=serve(fixtures / "charts" / "istio"),
        manifests=serve(fixtures),
    )


@pytest.fixture(params=["toy-charts", "upstream-charts"])
async def coordinator(
    request: pytest.FixtureRequest,
    sim: RunningSim,
    tmp_path: Path,
    static_http_server: ServerFactory,
) -> AsyncIterator[CoordinatorUnderTest]:
    make = toy_istio_adapter if request.param == "toy-charts" else _upstream
    adapter = make(sim, tmp_path, static_http_server)
    running: CoordinatorUnderTest | None = None
    try:
        await adapter.start()
        assert adapter.process is not None
        settings = dataclasses.replace(
            coordinator_settings(tmp_path / "coord", []),
            adapters=(StaticAdapter(mesh="istio", address=adapter.process.address),),
        )
        running = CoordinatorUnderTest(settings)
        await running.start()
        await running.wait_serving("istio")
        yield running
    finally:
        if running is not None:
            await running.stop()
        await adapter.close()


async def _cli(
    coordinator: CoordinatorUnderTest, *argv: str, stdin: bytes = b"", token: str = ADMIN.token
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(MESHPLANE),
        *argv,
        "--coordinator",
        coordinator.address,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, TOKEN_ENV: token},
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=240)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _documents(text: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    assert all(isinstance(d, dict) and d.get("kind") for d in documents)
    return documents


async def test_template_prints_the_install_manifests_and_applies_nothing(
    coordinator: CoordinatorUnderTest, sim: RunningSim
) -> None:
    code, out, err = await _cli(coordinator, "template", "istio", "install", "-p", "profile=demo")
    assert code == 0, err
    documents = _documents(out)
    assert {d["kind"] for d in documents} >= INSTALL_KINDS
    istiod = next(
        d for d in documents if (d["kind"], d["metadata"]["name"]) == ("Deployment", "istiod")
    )
    assert istiod["metadata"]["namespace"] == "istio-system"
    assert istiod["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshplane"
    assert await applied_objects(sim) == set()

    code, out, _ = await _cli(coordinator, "template", "istio", "install", "-o", "json")
    assert code == 0
    answer = yaml.safe_load(out)["rendered"]
    assert answer["namespace"] == "istio-system" and answer["mesh_version"]
    assert answer["objects"] == len(_documents(answer["manifests"]))


CUSTOM = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: strict
---
apiVersion: v1
kind: Secret
metadata:
  name: credentials
stringData:
  password: hunter2-do-not-print
"""


@pytest.mark.parametrize("coordinator", ["toy-charts"], indirect=True)
async def test_template_of_custom_yaml_prints_what_would_be_applied_without_secret_values(
    coordinator: CoordinatorUnderTest, sim: RunningSim
) -> None:
    code, out, err = await _cli(
        coordinator, "template", "istio", "custom", "-n", "apps", "-f", "-", stdin=CUSTOM.encode()
    )
    assert code == 0, err
    assert "hunter2" not in out
    by_kind = {d["kind"]: d for d in _documents(out)}
    assert sorted(by_kind) == ["ConfigMap", "Secret"]
    config, secret = by_kind["ConfigMap"], by_kind["Secret"]
    assert (config["kind"], config["metadata"]["namespace"], config["data"]) == (
        "ConfigMap",
        "apps",
        {"mode": "strict"},
    )
    assert config["metadata"]["labels"]["meshplane.io/mesh"] == "istio"
    assert secret["stringData"] == {"password": "<redacted: 20 bytes>"}
    assert await applied_objects(sim) == set()


@pytest.mark.parametrize("coordinator", ["toy-charts"], indirect=True)
async def test_template_refusals_exit_with_their_codes(coordinator: CoordinatorUnderTest) -> None:
    code, _, err = await _cli(coordinator, "template", "istio", "nope")
    assert code == 3 and "nope" in err
    code, _, err = await _cli(coordinator, "template", "istio", "install", "-p", "profile=huge")
    assert code == 2 and "--param profile" in err
    code, _, err = await _cli(coordinator, "template", "istio", "install", "-p", "oops")
    assert code == 2 and "KEY=VALUE" in err
    viewer = CALLERS["viewer"].token
    code, _, err = await _cli(coordinator, "template", "istio", "install", token=viewer)
    assert code == 5 and "manifests" in err
