"""Planning Linkerd's install: both charts in order, identity certificates generated once and
reused, and the control plane rendered with them (toy charts always; upstream when present)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.kit.declare.certificates import chain_problem
from adapters.kit.declare.sources import ChartSource
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import ApplyPlan
from adapters.kit.model.records import OperationRecord, OperationState
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import PlanError, Planner
from adapters.linkerd.declaration import DECLARATION, INSTALL, heartbeat_schedule
from tests.adapters.toy_repository import package_toy_repository, toy_mirror
from tests.fixtures_paths import shared_fixtures
from tests.kit.in_memory_cluster import InMemoryCluster
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
TOY_VERSION = "1.0.0"


def planner_for(charts: StaticHttpServer, mirror: StaticHttpServer, cache: Path) -> Planner:
    return Planner(
        DECLARATION,
        charts=ChartRepository(charts.url, cache / "charts", timeout=5.0),
        manifests=ManifestLibrary(
            upstream_url=DECLARATION.manifests_url,
            mirror_url=mirror.url,
            cache_dir=cache / "manifests",
            timeout=5.0,
        ),
    )


@pytest.fixture
def toy_planner(tmp_path: Path, static_http_server: ServerFactory) -> Planner:
    repo = package_toy_repository("linkerd", tmp_path / "repo", {TOY_VERSION: "edge-1.0.0"})
    return planner_for(
        static_http_server(repo), static_http_server(toy_mirror("linkerd")), tmp_path
    )


def record(version: str, **parameters: str) -> OperationRecord:
    return OperationRecord(
        operation_id="plan-test",
        operation="install",
        mesh="linkerd",
        mesh_version=version,
        namespace="",
        delete=False,
        parameters=parameters,
        username="test",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=dt.datetime.now(dt.UTC),
    )


def find(plan: ApplyPlan, kind: str, name: str) -> KubeObject:
    return next(o for o in plan.objects if o["kind"] == kind and o["metadata"]["name"] == name)


def pem(secret: KubeObject, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode().strip()


def assert_identity_wired(plan: ApplyPlan) -> None:
    stored = find(plan, "Secret", "meshplane-linkerd-identity")
    roots = find(plan, "ConfigMap", "linkerd-identity-trust-roots")
    issuer = find(plan, "Secret", "linkerd-identity-issuer")
    assert roots["data"]["ca-bundle.crt"].strip() == pem(stored, "ca.crt")
    assert pem(issuer, "crt.pem") == pem(stored, "issuer.crt")
    assert pem(issuer, "key.pem") == pem(stored, "issuer.key")
    assert chain_problem(pem(stored, "ca.crt"), pem(issuer, "crt.pem")) is None


async def test_install_plans_crds_first_and_the_control_plane_with_certificates(
    toy_planner: Planner,
) -> None:
    plan = await toy_planner.plan(INSTALL, record(TOY_VERSION), InMemoryCluster())
    kinds = [o["kind"] for o in plan.objects]
    assert kinds.count("CustomResourceDefinition") == 2
    last_crd = max(i for i, kind in enumerate(kinds) if kind == "CustomResourceDefinition")
    assert last_crd < kinds.index("Deployment")
    assert plan.namespace == "linkerd"
    assert plan.metadata["chart.linkerd-crds"] == "linkerd-crds-1.0.0"
    assert plan.metadata["chart.linkerd-control-plane"] == "linkerd-control-plane-1.0.0"
    assert_identity_wired(plan)
    replicas = find(plan, "Deployment", "linkerd-identity")["spec"]["replicas"]
    assert replicas == 1
    ha = await toy_planner.plan(
        INSTALL, record(TOY_VERSION, **{"controller-replicas": "3"}), InMemoryCluster()
    )
    assert find(ha, "Deployment", "linkerd-destination")["spec"]["replicas"] == 3


async def test_a_later_plan_reuses_the_stored_certificates(toy_planner: Planner) -> None:
    first = await toy_planner.plan(INSTALL, record(TOY_VERSION), InMemoryCluster())
    stored = find(first, "Secret", "meshplane-linkerd-identity")
    cluster = InMemoryCluster([stored, find(first, "Secret", "meshplane-linkerd-webhooks")])
    again = await toy_planner.plan(INSTALL, record(TOY_VERSION), cluster)
    assert find(again, "Secret", "meshplane-linkerd-identity") == stored
    assert find(again, "ConfigMap", "linkerd-identity-trust-roots") == find(
        first, "ConfigMap", "linkerd-identity-trust-roots"
    )
    assert again.metadata["values_digest"] == first.metadata["values_digest"]
    fresh = await toy_planner.plan(INSTALL, record(TOY_VERSION), InMemoryCluster())
    assert pem(find(fresh, "Secret", "meshplane-linkerd-identity"), "ca.crt") != pem(
        stored, "ca.crt"
    )


async def test_the_control_plane_chart_alone_refuses_to_render_without_certificates(
    toy_planner: Planner,
) -> None:
    chart = ChartSource(chart="linkerd-control-plane", release="linkerd-control-plane")
    bare = replace(INSTALL, sources=(chart,))
    with pytest.raises(PlanError, match="identity issuer certificate"):
        await toy_planner.plan(bare, record(TOY_VERSION), InMemoryCluster())


async def test_upstream_control_plane_renders_with_the_generated_certificates(
    tmp_path: Path, static_http_server: ServerFactory
) -> None:
    fixtures = shared_fixtures()
    planner = planner_for(
        static_http_server(fixtures / "charts" / "linkerd"),
        static_http_server(fixtures),
        tmp_path,
    )
    plan = await planner.plan(INSTALL, record("2026.8.3"), InMemoryCluster())
    assert len(plan.objects) == 10 + 40 + 2  # CRDs, control plane, the two stored Secrets
    assert_identity_wired(plan)
    webhooks = find(plan, "Secret", "meshplane-linkerd-webhooks")
    injector = find(plan, "MutatingWebhookConfiguration", "linkerd-proxy-injector-webhook-config")
    ca_bundle = base64.b64decode(injector["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    assert ca_bundle.strip() == pem(webhooks, "linkerd-proxy-injector.crt")
    serving = find(plan, "Secret", "linkerd-proxy-injector-k8s-tls")
    assert pem(serving, "tls.crt") == pem(webhooks, "linkerd-proxy-injector.crt")
    # The heartbeat runs at a time fixed by the trust anchor, not by the time of rendering
    # (the chart's default, which made a re-render crossing a minute change the CronJob).
    anchor = pem(find(plan, "Secret", "meshplane-linkerd-identity"), "ca.crt")
    heartbeat = find(plan, "CronJob", "linkerd-heartbeat")
    assert heartbeat["spec"]["schedule"] == heartbeat_schedule(anchor)
    # With both Secrets stored, planning again renders exactly the same objects (a no-op).
    stored = InMemoryCluster([find(plan, "Secret", "meshplane-linkerd-identity"), webhooks])
    again = await planner.plan(INSTALL, record("2026.8.3"), stored)
    assert again.objects == plan.objects


def test_the_heartbeat_schedule_is_a_daily_time_fixed_by_the_trust_anchor() -> None:
    anchors = [f"-----BEGIN CERTIFICATE-----\nanchor {n}\n" for n in range(200)]
    schedules = [heartbeat_schedule(anchor) for anchor in anchors]
    assert schedules == [heartbeat_schedule(anchor) for anchor in anchors]  # stable
    for schedule in schedules:
        minute, hour, *rest = schedule.split()
        assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
        assert rest == ["*", "*", "*"]
    assert len(set(schedules)) > 150  # spread over the day, as upstream's time of install is
