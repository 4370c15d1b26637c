"""The kit executor running the Istio catalogue in-process against kubesim (toy charts)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.plan.planner import Planner
from adapters.kit.process.executor_assembly import build_executor
from adapters.kit.process.settings import AdapterSettings
from adapters.kit.run.executor.chart_versions import ChartVersionCatalog
from adapters.kit.run.executor.kit_executor import KitExecutor
from adapters.kit.testing import managed_objects
from kubesim.faults import Faults
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.fixtures_paths import shared_fixtures
from tests.plugins.static_http import StaticHttpServer

TARGET = ClusterTarget(name="default")


@dataclass(frozen=True)
class Emitted:
    severity: Severity
    summary: str
    component: str
    details: str
    error: ErrorDetail | None


class Events:
    """An `OperationEmitter` that keeps what it is given."""

    def __init__(self) -> None:
        self.items: list[Emitted] = []

    def __call__(
        self,
        severity: Severity,
        summary: str,
        *,
        component: str = "",
        details: str = "",
        error: ErrorDetail | None = None,
    ) -> None:
        self.items.append(Emitted(severity, summary, component, details, error))

    def of(self, severity: Severity) -> list[Emitted]:
        return [e for e in self.items if e.severity is severity]


@pytest.fixture
async def executor(planner: Planner, sim: RunningSim) -> AsyncIterator[KitExecutor]:
    kit = KitExecutor(DECLARATION, planner, kubeconfig=sim.kubeconfig)
    yield kit
    await kit.aclose()


def record(operation: str, **changes: object) -> OperationRecord:
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


async def run(
    executor: KitExecutor, operation: str, **changes: object
) -> tuple[ClusterResult, Events]:
    spec = DECLARATION.operation(operation)
    assert spec is not None
    events = Events()
    result = await executor.execute(spec, record(operation, **changes), TARGET, events)
    return result, events


async def install_demo(executor: KitExecutor) -> None:
    """Install 1.0.0's demo profile: istiod and both gateways ready, status says so."""
    result, events = await run(
        executor, "install", mesh_version="1.0.0", parameters={"profile": "demo"}
    )
    assert result.state is OperationState.SUCCEEDED, events.items
    assert result.objects_applied > 10
    ready = [e.component for e in events.items if e.summary.endswith(" ready")]
    assert "Deployment istio-system/istiod" in ready
    assert "Deployment istio-system/istio-egressgateway" in ready
    status = await executor.status(TARGET, "")
    assert (status.installed, status.version, status.namespace) == (True, "1.0.0", "istio-system")
    assert {c.name for c in status.components if c.kind == "Deployment"} == {
        "istiod",
        "istio-ingressgateway",
        "istio-egressgateway",
    }
    assert all(c.ready for c in status.components)


async def reinstall_and_upgrade(executor: KitExecutor, session: ClusterSession) -> None:
    """A re-install changes nothing; the upgrade to 1.1.0's default profile prunes egress."""
    again, _ = await run(executor, "install", mesh_version="1.0.0", parameters={"profile": "demo"})
    assert again.state is OperationState.SUCCEEDED
    assert (again.objects_applied, again.summary.startswith("no changes")) == (0, True)

    upgraded, _ = await run(
        executor, "install", mesh_version="1.1.0", parameters={"profile": "default"}
    )
    assert upgraded.state is OperationState.SUCCEEDED
    assert upgraded.objects_deleted >= 1  # the demo egress gateway is pruned
    assert await session.get("apps/v1", "Deployment", "istio-egressgateway", "istio-system") is None
    assert (await executor.status(TARGET, "istio-system")).version == "1.1.0"


async def install_samples(executor: KitExecutor, session: ClusterSession) -> None:
    """Label the namespace and install bookinfo with its v1 route."""
    for operation in ("label-namespace", "bookinfo", "bookinfo-route-v1"):
        done, events = await run(executor, operation)
        assert done.state is OperationState.SUCCEEDED, (operation, events.items)
    gateway = await session.get("networking.istio.io/v1", "Gateway", "bookinfo-gateway", "default")
    assert gateway is not None
    assert (await executor.status(TARGET, "")).injection_namespaces == ("default",)


async def validate_warns_of_missing_sidecars(executor: KitExecutor) -> None:
    validated, events = await run(executor, "validate")
    # Pods of the labelled namespace run without the sidecar (kubesim injects nothing).
    assert validated.state is OperationState.SUCCEEDED, events.of(Severity.ERROR)
    warnings = events.of(Severity.WARNING)
    assert any("without the istio-proxy sidecar" in e.summary for e in warnings)
    summary = events.items[-1]
    assert summary.component == "summary"
    assert f"{len(warnings) - 1} warnings" in summary.summary


async def canary_then_remove_samples(executor: KitExecutor, session: ClusterSession) -> None:
    """A canary whose subsets exist, then every sample removed and the injection label gone."""
    canary, _ = await run(
        executor,
        "bookinfo-canary",
        parameters={"reviews-v1-weight": "10", "reviews-v2-weight": "0", "reviews-v3-weight": "90"},
    )
    assert canary.state is OperationState.SUCCEEDED

    for operation in ("bookinfo-route-v1", "bookinfo-canary", "bookinfo", "label-namespace"):
        removed, events = await run(executor, operation, delete=True)
        assert removed.state is OperationState.SUCCEEDED, (operation, events.items)
    namespace = await session.get("v1", "Namespace", "default")
    assert namespace is not None
    assert "istio-injection" not in (namespace["metadata"].get("labels") or {})


async def uninstall_keeps_crds_until_purged(executor: KitExecutor, sim: RunningSim) -> None:
    """The CRDs stay unless asked (users' custom resources live in them), and it says so."""
    gone, events = await run(executor, "install", delete=True)
    assert gone.state is OperationState.SUCCEEDED, events.items
    assert gone.objects_deleted >= 10
    left = await managed_objects(sim.url)
    assert left and {kind for kind, _, _ in left} == {"CustomResourceDefinition"}
    assert f"kept {len(left)} CustomResourceDefinitions" in gone.summary
    assert any("--param purge-crds=true" in e.summary for e in events.of(Severity.WARNING))
    purged, events = await run(executor, "install", delete=True, parameters={"purge-crds": "true"})
    assert purged.state is OperationState.SUCCEEDED, events.items
    assert purged.objects_deleted == len(left)
    assert await managed_objects(sim.url) == []
    assert not (await executor.status(TARGET, "")).installed


async def test_install_upgrade_samples_validate_uninstall(
    executor: KitExecutor, session: ClusterSession, sim: RunningSim
) -> None:
    await install_demo(executor)
    await reinstall_and_upgrade(executor, session)
    await install_samples(executor, session)
    await validate_warns_of_missing_sidecars(executor)
    await canary_then_remove_samples(executor, session)
    await uninstall_keeps_crds_until_purged(executor, sim)


async def test_validate_reports_broken_routes_and_a_missing_mesh(
    executor: KitExecutor, session: ClusterSession
) -> None:
    bare, events = await run(executor, "validate")
    assert bare.state is OperationState.FAILED
    assert bare.error is not None and bare.error.code == "VALIDATION_FAILED"
    assert any("no Istio CRDs" in e.summary for e in events.of(Severity.ERROR))

    installed, _ = await run(executor, "install", parameters={"profile": "minimal"})
    assert installed.state is OperationState.SUCCEEDED
    custom = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v9}
    - destination: {host: nowhere.default.svc.cluster.local}
"""
    applied, _ = await run(executor, "custom", custom_body=custom)
    assert applied.state is OperationState.SUCCEEDED
    booked, _ = await run(executor, "bookinfo")
    assert booked.state is OperationState.SUCCEEDED
    checked, events = await run(executor, "validate")
    assert checked.state is OperationState.FAILED
    errors = [e for e in events.of(Severity.ERROR) if e.component.startswith("VirtualService")]
    assert "reviews subset v9" in errors[0].details
    warnings = [e for e in events.of(Severity.WARNING) if e.component.startswith("VirtualService")]
    assert "destination nowhere.default.svc.cluster.local" in warnings[0].details
    assert "2 errors" not in events.items[-1].summary and "1 errors" in events.items[-1].summary

    removed, _ = await run(executor, "custom", custom_body=custom, delete=True)
    assert removed.state is OperationState.SUCCEEDED and removed.objects_deleted == 1
    assert (
        await session.get("networking.istio.io/v1", "VirtualService", "reviews", "default") is None
    )


async def test_failures_come_back_as_failed_results(
    executor: KitExecutor, session: ClusterSession
) -> None:
    refused, events = await run(
        executor, "custom", custom_body="apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n"
    )
    assert refused.state is OperationState.FAILED
    assert refused.error is not None and refused.error.code == "PERMISSION_DENIED"
    assert events.of(Severity.ERROR)[0].error == refused.error
    missing, _ = await run(executor, "install", mesh_version="7.0.0")
    assert missing.error is not None and missing.error.code == "MESH_VERSION_NOT_FOUND"
    nothing, _ = await run(executor, "bookinfo", delete=True)
    assert nothing.state is OperationState.SUCCEEDED
    assert "nothing to delete" in nothing.summary


async def test_build_executor_from_settings(
    tmp_path: Path,
    sim: RunningSim,
    toy_chart_server: StaticHttpServer,
    toy_mirror_server: StaticHttpServer,
) -> None:
    settings = AdapterSettings(
        kubeconfig=sim.kubeconfig,
        chart_repo=toy_chart_server.url,
        manifests_url=toy_mirror_server.url,
        cache_dir=tmp_path / "cache",
    )
    executor, catalog = build_executor(DECLARATION, settings)
    assert isinstance(catalog, ChartVersionCatalog)
    assert [v.version for v in await catalog.versions()] == ["1.1.0", "1.0.0"]
    assert await catalog.default_version() == "1.1.0"
    spec = DECLARATION.operation("httpbin")
    assert spec is not None
    try:
        result = await executor.execute(spec, record("httpbin"), TARGET, Events())
    finally:
        await executor.aclose()
    assert result.state is OperationState.SUCCEEDED
    assert toy_mirror_server.requests("/apps/httpbin.yaml") == 1


async def test_a_flaky_api_server_is_retried_and_counted(
    tmp_path: Path, toy_chart_server: StaticHttpServer, toy_mirror_server: StaticHttpServer
) -> None:
    flaky = SimConfig(
        ready_delay=0.05,
        faults=Faults(error_rate={"patch": 0.3, "get": 0.1}, error_code=500, seed=11),
    )
    retries: list[None] = []
    with running_kubesim(flaky) as sim:
        settings = AdapterSettings(
            kubeconfig=sim.kubeconfig,
            chart_repo=toy_chart_server.url,
            manifests_url=toy_mirror_server.url,
            cache_dir=tmp_path / "cache",
        )
        executor, _ = build_executor(
            DECLARATION, settings, on_kubernetes_retry=lambda: retries.append(None)
        )
        try:
            result, events = await run(executor, "install", parameters={"profile": "demo"})
        finally:
            await executor.aclose()
    assert result.state is OperationState.SUCCEEDED, events.of(Severity.ERROR)
    assert retries, "injected 500s were retried through the hook"


def _catalogue_sources(kind: str, tmp_path: Path) -> tuple[Path, Path, str]:
    if kind == "upstream":
        fixtures = shared_fixtures()
        return fixtures / "charts" / "istio", fixtures, "1.30.3"
    return package_toy_repo(tmp_path / "charts"), TOY_MIRROR, "1.1.0"


@pytest.mark.parametrize("kind", ["toy", "upstream"])
async def test_every_operation_applies_and_deletes(
    kind: str,
    tmp_path: Path,
    sim: RunningSim,
    session: ClusterSession,
    static_http_server: Callable[[Path], StaticHttpServer],
) -> None:
    charts, mirror, version = _catalogue_sources(kind, tmp_path)
    settings = AdapterSettings(
        kubeconfig=sim.kubeconfig,
        chart_repo=static_http_server(charts).url,
        manifests_url=static_http_server(mirror).url,
        cache_dir=tmp_path / "cache",
    )
    executor, _ = build_executor(DECLARATION, settings)
    try:
        await _every_operation(executor, session, version)
    finally:
        await executor.aclose()
    assert await managed_objects(sim.url) == []


async def _every_operation(executor: KitExecutor, session: ClusterSession, version: str) -> None:
    installed, events = await run(
        executor, "install", mesh_version=version, parameters={"profile": "minimal"}
    )
    assert installed.state is OperationState.SUCCEEDED, events.of(Severity.ERROR)
    # No operation but install creates a namespace unless asked (issue 15: `label-namespace
    # --namespace nope` created nope).
    for operation in ("label-namespace", "bookinfo", "deny-all", "prometheus"):
        refused, _ = await run(executor, operation, namespace="books")
        assert refused.state is OperationState.FAILED, operation
        assert refused.error is not None and refused.error.code == "FAILED_PRECONDITION"
        assert refused.error.message.startswith("namespace 'books' does not exist; pass "), (
            operation
        )
    assert await session.get("v1", "Namespace", "books") is None
    for spec in DECLARATION.operations:
        if spec.id in ("install", "validate", "custom"):
            continue
        defaults = {p.name: p.default for p in spec.parameters if p.default}
        applied, events = await run(
            executor, spec.id, namespace="books", parameters=defaults | {"create-namespace": "true"}
        )
        assert applied.state is OperationState.SUCCEEDED, (spec.id, events.of(Severity.ERROR))
        assert applied.objects_applied > 0, spec.id
        removed, events = await run(executor, spec.id, namespace="books", delete=True)
        assert removed.state is OperationState.SUCCEEDED, (spec.id, events.of(Severity.ERROR))
        assert removed.objects_deleted == applied.objects_applied, spec.id
    removed, _ = await run(executor, "install", delete=True, parameters={"purge-crds": "true"})
    assert removed.state is OperationState.SUCCEEDED


async def test_versions_come_from_the_install_chart_index(
    tmp_path: Path, static_http_server: Callable[[Path], StaticHttpServer]
) -> None:
    repo = package_toy_repo(tmp_path / "charts", versions=("1.0.0", "1.2.0-rc.1", "1.1.0"))
    server = static_http_server(repo)
    _, catalog = build_executor(
        DECLARATION, AdapterSettings(chart_repo=server.url, cache_dir=tmp_path / "cache")
    )
    versions = await catalog.versions()
    assert [(v.version, v.prerelease) for v in versions] == [
        ("1.1.0", False),
        ("1.0.0", False),
        ("1.2.0-rc.1", True),
    ]
    assert versions[0].created == datetime(2026, 1, 1, tzinfo=UTC)
    assert await catalog.default_version() == "1.1.0"
