"""What the istio adapter really asks the API server for, across its whole catalogue, is
granted by its committed ClusterRole (recorded through a proxy in front of kubesim)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.istio.declaration import DECLARATION as ISTIO
from adapters.kit.declare.mesh import MeshDeclaration
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
from adapters.kit.process.mesh_registry import load_declaration
from adapters.kit.run.executor.chart_versions import install_chart
from adapters.kit.run.executor.kit_executor import KitExecutor
from adapters.rbac.derivation import derive
from adapters.rbac.permissions import Permission, rules_cover
from kubesim.harness import RunningSim
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.deploy.chart import committed_role
from tests.deploy.recording_proxy import recording_proxy
from tests.fixtures_paths import shared_fixtures

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


def _record(declaration: MeshDeclaration, operation: str, **changes: object) -> OperationRecord:
    spec = declaration.operation(operation)
    assert spec is not None
    base = OperationRecord(
        operation_id=f"op-{operation}",
        operation=operation,
        mesh=declaration.mesh,
        mesh_version="",
        namespace=spec.default_namespace,
        delete=False,
        parameters={p.name: p.default for p in spec.parameters if p.default},
        username="test",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
        timeout_seconds=60.0,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def _run_catalogue(executor: KitExecutor, versions: list[str]) -> None:
    """Install the older version, upgrade (which lists the release's objects), every sample and
    configuration, validate, status, then remove everything again."""
    declaration = executor.declaration

    async def run(operation: str, **changes: object) -> OperationState:
        spec = declaration.operation(operation)
        assert spec is not None
        result = await executor.execute(
            spec, _record(declaration, operation, **changes), TARGET, _emit
        )
        if spec.check is None:
            assert result.state is OperationState.SUCCEEDED, (operation, changes, result.error)
        return result.state

    newer, older = versions[0], versions[-1]  # the repository lists newest first
    install = declaration.status_release
    await run(install, mesh_version=older)
    await run(install, mesh_version=newer)
    await executor.status(TARGET, "")
    applied = [
        spec.id
        for spec in declaration.operations
        if spec.id != install and not spec.custom and spec.check is None
    ]
    for operation in applied:
        # Samples land in namespaces of their own, which the request asks to create.
        spec = declaration.operation(operation)
        assert spec is not None
        defaults = {p.name: p.default for p in spec.parameters if p.default}
        await run(operation, parameters=defaults | {"create-namespace": "true"})
    for spec in declaration.operations:
        if spec.check is not None:
            await run(spec.id)
    for operation in reversed(applied):
        await run(operation, delete=True)
    # Purging lists the custom resources of every CRD first (refused while users' exist).
    await run(install, delete=True, parameters={"purge-crds": "true"})


async def _record_catalogue(sim: RunningSim, planner: Planner, tmp_path: Path) -> set[Permission]:
    """Every permission the catalogue's API requests need, recorded through a proxy."""
    versions = await planner.charts.versions(install_chart(planner.declaration))
    async with recording_proxy(sim.url) as proxy:
        kubeconfig = proxy.write_kubeconfig(sim.kubeconfig, tmp_path / "kubeconfig")
        executor = KitExecutor(planner.declaration, planner, kubeconfig=kubeconfig)
        try:
            await _run_catalogue(executor, versions)
        finally:
            await executor.aclose()
    assert proxy.requests, "the adapter made no API requests through the proxy"
    return {permission for request in proxy.requests for permission in request.permissions()}


def _planner(declaration: MeshDeclaration, charts: Path, manifests: Path, cache: Path) -> Planner:
    return Planner(
        declaration,
        charts=ChartRepository(str(charts), cache / "charts"),
        manifests=ManifestLibrary(
            upstream_url=declaration.manifests_url,
            mirror_url=str(manifests),
            cache_dir=cache / "manifests",
        ),
    )


async def test_every_request_of_the_toy_istio_catalogue_is_granted(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    repo = package_toy_repo(tmp_path / "charts")
    planner = _planner(ISTIO, repo, TOY_MIRROR, tmp_path / "cache")
    used = await _record_catalogue(kubesim, planner, tmp_path)
    # The proxy saw the kit at work: applies that created objects, upgrades listing by label.
    assert Permission(group="", resource="secrets", verb="create") in used
    assert Permission(group="apps", resource="deployments", verb="list") in used
    assert Permission(group="", resource="namespaces", verb="patch") in used
    assert Permission(group="networking.istio.io", resource="virtualservices", verb="list") in used

    rules = committed_role("istio")["rules"]
    assert sorted(str(p) for p in used if not rules_cover(rules, p)) == []
    # The check has teeth: a role without its Secret rules misses the inventory.
    no_secrets = [r for r in rules if "secrets" not in r.get("resources", [])]
    assert any(p.resource == "secrets" and not rules_cover(no_secrets, p) for p in used)

    # The derivation alone (no committed file) predicted every one of them.
    needed = await derive(
        ISTIO,
        charts=planner.charts,
        manifests=planner.manifests,
        install_chart=install_chart(ISTIO),
    )
    derived = needed.rules()
    assert sorted(str(p) for p in used if not rules_cover(derived, p)) == []


@pytest.mark.timeout(110)
@pytest.mark.parametrize(("mesh", "repo"), [("linkerd", "linkerd"), ("consul", "hashicorp")])
async def test_every_request_of_the_real_catalogue_is_granted(
    mesh: str, repo: str, kubesim: RunningSim, tmp_path: Path
) -> None:
    """The same with the upstream charts and manifests (../shared/fixtures)."""
    fixtures = shared_fixtures()
    declaration = load_declaration(mesh)
    planner = _planner(declaration, fixtures / "charts" / repo, fixtures, tmp_path / "cache")
    used = await _record_catalogue(kubesim, planner, tmp_path)
    assert Permission(group="", resource="secrets", verb="create") in used
    rules = committed_role(mesh)["rules"]
    assert sorted(str(p) for p in used if not rules_cover(rules, p)) == []
