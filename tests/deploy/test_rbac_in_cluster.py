"""What the istio adapter really asks the API server for, across its whole catalogue, is
granted by its committed ClusterRole (recorded through a proxy in front of kubesim)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.chart_repository import ChartRepository
from adapters.kit.execution import KitExecutor, install_chart
from adapters.kit.operations import (
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.planning import ManifestLibrary, Planner
from adapters.kit.rbac import Permission, derive, rules_cover
from kubesim.harness import RunningSim
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.deploy.chart import committed_role
from tests.deploy.recording_proxy import RecordingProxy, recording_proxy

TARGET = ClusterTarget(name="default")


def _emit(
    severity: Severity,
    summary: str,
    *,
    component: str = "",
    details: str = "",
    error: ErrorDetail | None = None,
) -> None:
    del severity, summary, component, details, error


def _record(operation: str, **changes: object) -> OperationRecord:
    spec = DECLARATION.operation(operation)
    assert spec is not None
    base = OperationRecord(
        operation_id=f"op-{operation}",
        operation=operation,
        mesh="istio",
        mesh_version="",
        namespace=spec.default_namespace,
        delete=False,
        parameters={p.name: p.default for p in spec.parameters if p.default},
        username="test",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
        timeout_seconds=30.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def planner(tmp_path: Path) -> Planner:
    repo = package_toy_repo(tmp_path / "charts")
    return Planner(
        DECLARATION,
        charts=ChartRepository(str(repo), tmp_path / "cache"),
        manifests=ManifestLibrary(
            upstream_url=DECLARATION.manifests_url,
            mirror_url=str(TOY_MIRROR),
            cache_dir=tmp_path / "cache",
        ),
    )


async def _run_catalogue(executor: KitExecutor) -> None:
    """Install, upgrade, every sample and configuration, validate, status, then remove all."""

    async def run(operation: str, **changes: object) -> None:
        spec = DECLARATION.operation(operation)
        assert spec is not None
        result = await executor.execute(spec, _record(operation, **changes), TARGET, _emit)
        assert result.state is OperationState.SUCCEEDED, (operation, changes, result.error)

    await run("install", mesh_version="1.0.0", parameters={"profile": "demo"})
    await run("install", mesh_version="1.1.0", parameters={"profile": "demo"})
    await executor.status(TARGET, "")
    applied = [
        spec.id
        for spec in DECLARATION.operations
        if spec.id != "install" and not spec.custom and spec.check is None
    ]
    for operation in applied:
        await run(operation)
    await run("label-namespace")  # a second apply of a fields-only release
    await run("validate")
    for operation in reversed(applied):
        await run(operation, delete=True)
    await run("install", delete=True)


async def test_every_request_of_the_catalogue_is_granted(
    kubesim: RunningSim, planner: Planner, tmp_path: Path
) -> None:
    async with recording_proxy(kubesim.url) as proxy:
        kubeconfig = proxy.write_kubeconfig(kubesim.kubeconfig, tmp_path / "kubeconfig")
        executor = KitExecutor(DECLARATION, planner, kubeconfig=kubeconfig)
        try:
            await _run_catalogue(executor)
        finally:
            await executor.aclose()
    used = _used(proxy)
    # The proxy saw the kit at work: applies that created objects, upgrades listing by label.
    assert Permission(group="", resource="secrets", verb="create") in used
    assert Permission(group="apps", resource="deployments", verb="list") in used
    assert Permission(group="", resource="namespaces", verb="patch") in used
    assert Permission(group="networking.istio.io", resource="virtualservices", verb="list") in used

    rules = committed_role("istio")["rules"]
    missing = sorted(str(p) for p in used if not rules_cover(rules, p))
    assert missing == []
    # The check has teeth: a role without its Secret rules misses the inventory.
    no_secrets = [r for r in rules if "secrets" not in r.get("resources", [])]
    assert any(p.resource == "secrets" and not rules_cover(no_secrets, p) for p in used)

    # The derivation alone (no committed file) predicted every one of them.
    needed = await derive(
        DECLARATION,
        charts=planner.charts,
        manifests=planner.manifests,
        install_chart=install_chart(DECLARATION),
    )
    derived = needed.rules()
    assert sorted(str(p) for p in used if not rules_cover(derived, p)) == []


def _used(proxy: RecordingProxy) -> set[Permission]:
    assert proxy.requests, "the adapter made no API requests through the proxy"
    return {permission for request in proxy.requests for permission in request.permissions()}
