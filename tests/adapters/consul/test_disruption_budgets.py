"""Consul 1.8.16 picks its PodDisruptionBudget apiVersion from the cluster's capabilities.

Its templates say ``policy/v1`` only when ``.Capabilities.APIVersions`` has
``policy/v1/PodDisruptionBudget``, else ``policy/v1beta1``, which clusters from 1.25 on (and
kubesim, at 1.34) no longer serve. The adapter must render for the cluster it installs into.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.consul.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.records import (
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import Planner
from adapters.kit.plan.render_cache import RenderCache
from adapters.kit.run.executor.kit_executor import KitExecutor
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.fixtures_paths import shared_fixtures

VERSION = "1.8.16"
NAMESPACE = "consul"
BUDGETS = {"consul-server", "consul-connect-injector"}


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
async def session(sim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as connected:
        yield connected


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    charts = shared_fixtures() / "charts" / "hashicorp"
    return Planner(
        DECLARATION,
        charts=ChartRepository(str(charts), tmp_path / "charts", timeout=5.0),
        manifests=ManifestLibrary(
            upstream_url=DECLARATION.manifests_url, cache_dir=tmp_path / "manifests"
        ),
        render_cache=RenderCache(tmp_path / "rendered"),
    )


def install_record() -> OperationRecord:
    return OperationRecord(
        operation_id="op-install",
        operation="install",
        mesh="consul",
        mesh_version=VERSION,
        namespace=NAMESPACE,
        delete=False,
        parameters={},
        username="test",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
        timeout_seconds=60.0,
    )


def budgets(objects: tuple[KubeObject, ...]) -> dict[str, str]:
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    return {o["metadata"]["name"]: o["apiVersion"] for o in pdbs}


async def test_rendered_for_the_cluster_the_budgets_are_policy_v1(
    planner: Planner, session: ClusterSession
) -> None:
    spec = DECLARATION.operation("install")
    assert spec is not None
    kube_version = await session.server_version()
    api_versions = await session.api_versions()
    assert kube_version.startswith("v1.34.")
    assert "policy/v1/PodDisruptionBudget" in api_versions
    assert "policy/v1beta1" not in api_versions
    plan = await planner.plan(
        spec, install_record(), session, kube_version=kube_version, api_versions=api_versions
    )
    assert budgets(plan.objects) == dict.fromkeys(BUDGETS, "policy/v1")
    # Offline (Helm's built-in capabilities) the same chart asks for the removed version; the
    # capabilities are part of the render cache key, so this is a fresh render.
    offline = await planner.plan(spec, install_record(), session)
    assert budgets(offline.objects) == dict.fromkeys(BUDGETS, "policy/v1beta1")


class Emitted:
    """An `OperationEmitter` keeping error summaries."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(
        self,
        severity: Severity,
        summary: str,
        *,
        component: str = "",
        details: str = "",
        error: ErrorDetail | None = None,
    ) -> None:
        if severity is Severity.ERROR:
            self.errors.append(f"{summary}: {details}")


@pytest.mark.timeout(90)
async def test_the_install_applies_policy_v1_budgets(
    planner: Planner, session: ClusterSession, sim: RunningSim
) -> None:
    spec = DECLARATION.operation("install")
    assert spec is not None
    executor = KitExecutor(DECLARATION, planner, kubeconfig=sim.kubeconfig)
    emitted = Emitted()
    record = dataclasses.replace(install_record(), timeout_seconds=60.0)
    try:
        result = await executor.execute(spec, record, ClusterTarget(name="default"), emitted)
    finally:
        await executor.aclose()
    assert result.state is OperationState.SUCCEEDED, (result, emitted.errors)
    stored = await session.list("policy/v1", "PodDisruptionBudget", NAMESPACE)
    assert {o["metadata"]["name"] for o in stored} == BUDGETS
    for budget in stored:
        # managedFields record the apiVersion each manager applied with
        applied = {
            entry["apiVersion"]
            for entry in budget["metadata"]["managedFields"]
            if entry["manager"] == "meshplane"
        }
        assert applied == {"policy/v1"}, budget["metadata"]["name"]
