"""The kit planner through the Istio declaration, on the toy charts, mirror and kubesim."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.declare.sources import ManifestSource
from adapters.kit.model.custom_bodies import CUSTOM_MAX_BYTES
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.ordering import INSTALL_ORDER
from adapters.kit.model.plans import ApplyPlan
from adapters.kit.model.records import OperationRecord, OperationState
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import PlanError, Planner
from adapters.kit.run.admission import CustomBodyPolicy, FieldProblem, check_custom_body
from tests.adapters.istio.toy_istio import TOY_MIRROR
from tests.plugins.static_http import StaticHttpServer


def spec(operation: str) -> OperationSpec:
    found = DECLARATION.operation(operation)
    assert found is not None, operation
    return found


def record(
    operation: str,
    *,
    namespace: str = "",
    mesh_version: str = "",
    parameters: dict[str, str] | None = None,
    custom_body: str = "",
    delete: bool = False,
) -> OperationRecord:
    return OperationRecord(
        operation_id=f"op-{operation}",
        operation=operation,
        mesh="istio",
        mesh_version=mesh_version,
        namespace=namespace or spec(operation).default_namespace,
        delete=delete,
        parameters=parameters or {},
        username="test",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
        custom_body=custom_body,
    )


def names(plan: ApplyPlan, kind: str) -> list[str]:
    return [o["metadata"]["name"] for o in plan.objects if o["kind"] == kind]


def kind_rank(obj: KubeObject) -> int:
    kind = obj["kind"]
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


async def plan_of(
    planner: Planner, session: ClusterSession, operation: str, **kwargs: object
) -> ApplyPlan:
    return await planner.plan(spec(operation), record(operation, **kwargs), session)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("profile", "gateways"),
    [
        ("minimal", []),
        ("default", ["istio-ingressgateway"]),
        ("demo", ["istio-ingressgateway", "istio-egressgateway"]),
    ],
)
async def test_install_profiles_choose_the_gateways(
    planner: Planner, session: ClusterSession, profile: str, gateways: list[str]
) -> None:
    plan = await plan_of(
        planner, session, "install", mesh_version="1.1.0", parameters={"profile": profile}
    )
    assert sorted(names(plan, "Deployment")) == sorted(["istiod", *gateways])
    assert plan.release == "istio-install"
    assert plan.namespace == "istio-system"
    assert plan.metadata["mesh_version"] == "1.1.0"
    assert plan.metadata["chart.istiod"] == "istiod-1.1.0"
    assert plan.metadata["values_digest"].startswith("sha256:")
    assert plan.keep == frozenset(), "Istio's keep-annotated CRDs are purged on delete"
    ranks = [kind_rank(o) for o in plan.objects]
    assert ranks == sorted(ranks), "objects are in install order"
    for obj in plan.objects:
        if obj["kind"] in ("Deployment", "Service", "ConfigMap", "ServiceAccount"):
            assert obj["metadata"]["namespace"] == "istio-system"


async def test_demo_profile_values_reach_the_charts(
    planner: Planner, session: ClusterSession
) -> None:
    demo = await plan_of(planner, session, "install", parameters={"profile": "demo"})
    default = await plan_of(planner, session, "install", parameters={"profile": "default"})
    mesh_config = {
        p.metadata["values_digest"]: next(
            o["data"]["mesh"] for o in p.objects if o["kind"] == "ConfigMap"
        )
        for p in (demo, default)
    }
    assert 'accessLogFile: "/dev/stdout"' in mesh_config[demo.metadata["values_digest"]]
    assert "sampling: 1\n" in mesh_config[default.metadata["values_digest"]]
    egress = next(
        o
        for o in demo.objects
        if o["kind"] == "Service" and o["metadata"]["name"] == "istio-egressgateway"
    )
    assert egress["spec"]["type"] == "ClusterIP"


async def test_install_defaults_to_the_newest_version_and_refuses_unknown_ones(
    planner: Planner, session: ClusterSession
) -> None:
    plan = await plan_of(planner, session, "install")
    assert plan.metadata["mesh_version"] == "1.1.0"
    with pytest.raises(PlanError) as caught:
        await plan_of(planner, session, "install", mesh_version="9.9.9")
    assert caught.value.detail.code == "MESH_VERSION_NOT_FOUND"
    assert "1.0.0" in caught.value.detail.message


async def test_install_in_another_namespace_is_another_release(
    planner: Planner, session: ClusterSession
) -> None:
    plan = await plan_of(planner, session, "install", namespace="istio-canary")
    assert (plan.release, plan.namespace) == ("istio-install", "istio-canary")
    webhooks = [o for o in plan.objects if o["kind"] == "MutatingWebhookConfiguration"]
    assert webhooks[0]["webhooks"][0]["clientConfig"]["service"]["namespace"] == "istio-canary"


async def test_bookinfo_gateway_only_once_istio_crds_exist(
    planner: Planner, session: ClusterSession
) -> None:
    without = await plan_of(planner, session, "bookinfo")
    assert names(without, "Gateway") == []
    assert len(names(without, "Deployment")) == 6
    assert {o["metadata"]["namespace"] for o in without.objects} == {"default"}
    install = await plan_of(planner, session, "install")
    for crd in (o for o in install.objects if o["kind"] == "CustomResourceDefinition"):
        await session.apply(crd)
    with_crds = await plan_of(planner, session, "bookinfo", namespace="books")
    assert names(with_crds, "Gateway") == ["bookinfo-gateway"]
    assert names(with_crds, "VirtualService") == ["bookinfo"]
    assert {o["metadata"]["namespace"] for o in with_crds.objects} == {"books"}


async def test_upstream_location_follows_the_mesh_version(tmp_path: Path) -> None:
    library = ManifestLibrary(upstream_url=DECLARATION.manifests_url, cache_dir=tmp_path)
    source = spec("bookinfo").sources[0]
    assert isinstance(source, ManifestSource)
    assert library.location(source, "1.30.3") == (
        "https://raw.githubusercontent.com/istio/istio/1.30.3/",
        "samples/bookinfo/platform/kube/bookinfo.yaml",
    )
    mirror = ManifestLibrary(
        upstream_url=DECLARATION.manifests_url, mirror_url="http://mirror/", cache_dir=tmp_path
    )
    assert mirror.location(source, "1.30.3") == ("http://mirror/", "apps/bookinfo.yaml")


async def test_route_v1_and_addons_come_from_the_mirror(
    planner: Planner, session: ClusterSession
) -> None:
    route = await plan_of(planner, session, "bookinfo-route-v1")
    assert sorted(names(route, "VirtualService")) == [
        "details",
        "productpage",
        "ratings",
        "reviews",
    ]
    assert len(names(route, "DestinationRule")) == 4
    for addon in ("prometheus", "grafana", "kiali", "jaeger"):
        plan = await plan_of(planner, session, addon)
        assert names(plan, "Deployment") == [addon]
        assert plan.namespace == "istio-system"


async def test_policies_are_built_from_parameters(
    planner: Planner, session: ClusterSession
) -> None:
    for mode in ("STRICT", "PERMISSIVE", "DISABLE"):
        plan = await plan_of(planner, session, f"mtls-{mode.lower()}", namespace="books")
        (policy,) = plan.objects
        assert policy["kind"] == "PeerAuthentication"
        assert policy["metadata"] == {"name": "default", "namespace": "books"}
        assert policy["spec"] == {"mtls": {"mode": mode}}
    (deny,) = (await plan_of(planner, session, "deny-all")).objects
    assert (deny["kind"], deny["spec"]) == ("AuthorizationPolicy", {})


async def test_canary_weights(planner: Planner, session: ClusterSession) -> None:
    check = spec("bookinfo-canary").request_check
    assert check is not None
    assert check({}) == []
    assert (
        check({"reviews-v1-weight": "20", "reviews-v2-weight": "30", "reviews-v3-weight": "50"})
        == []
    )
    assert check({"reviews-v1-weight": "20", "reviews-v2-weight": "30"}) == []  # v3 defaults to 50
    ((field, message),) = check({"reviews-v1-weight": "90", "reviews-v3-weight": "50"})
    assert field == "parameters"
    assert "must sum to 100, got 140" in message
    assert check({"reviews-v1-weight": "x"})[0][0] == "parameters.reviews-v1-weight"
    plan = await plan_of(
        planner,
        session,
        "bookinfo-canary",
        parameters={"reviews-v1-weight": "0", "reviews-v2-weight": "25", "reviews-v3-weight": "75"},
    )
    vs = next(o for o in plan.objects if o["kind"] == "VirtualService")
    assert vs["spec"]["http"][0]["route"] == [
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25},
        {"destination": {"host": "reviews", "subset": "v3"}, "weight": 75},
    ]
    dr = next(o for o in plan.objects if o["kind"] == "DestinationRule")
    assert [s["name"] for s in dr["spec"]["subsets"]] == ["v1", "v2", "v3"]


async def test_fault_injection(planner: Planner, session: ClusterSession) -> None:
    plan = await plan_of(
        planner, session, "bookinfo-fault", parameters={"delay-ms": "2500", "abort-percent": "10"}
    )
    (vs,) = plan.objects
    fault = vs["spec"]["http"][0]["fault"]
    assert fault["delay"]["fixedDelay"] == "2500ms"
    assert fault["abort"] == {"httpStatus": 500, "percentage": {"value": 10.0}}
    quiet = await plan_of(
        planner, session, "bookinfo-fault", parameters={"delay-ms": "0", "abort-percent": "0"}
    )
    assert "fault" not in quiet.objects[0]["spec"]["http"][0]


async def test_label_namespace_owns_only_the_label(
    planner: Planner, session: ClusterSession
) -> None:
    plan = await plan_of(planner, session, "label-namespace", namespace="books")
    assert plan.ownership_fields_only
    assert plan.objects == (
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "books", "labels": {"istio-injection": "enabled"}},
        },
    )


CUSTOM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: zero}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: one
  labels: &shared {app: demo}
  annotations: *shared
data: {a: "1"}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: two, namespace: elsewhere}
"""


async def test_custom_body_is_namespaced_by_default(
    planner: Planner, session: ClusterSession
) -> None:
    body = CUSTOM
    plan = await plan_of(planner, session, "custom", namespace="books", custom_body=body)
    assert [(o["metadata"]["name"], o["metadata"]["namespace"]) for o in plan.objects] == [
        ("zero", "books"),
        ("one", "books"),
        ("two", "elsewhere"),
    ]
    assert plan.objects[1]["metadata"]["annotations"] == {"app": "demo"}
    assert re.fullmatch(r"istio-custom-[0-9a-f]{12}", plan.release), plan.release
    again = await plan_of(planner, session, "custom", namespace="books", custom_body=body)
    assert again.release == plan.release
    other = await plan_of(planner, session, "custom", namespace="books", custom_body=body + "\n")
    assert other.release != plan.release


async def test_custom_cluster_scoped_needs_the_operator_switch(
    planner: Planner, session: ClusterSession
) -> None:
    body = "apiVersion: v1\nkind: Namespace\nmetadata: {name: made-by-custom}\n"
    plan = await plan_of(planner, session, "custom", custom_body=body)
    assert "namespace" not in plan.objects[0]["metadata"]
    assert plan.requested == {ObjectRef.from_manifest(plan.objects[0]).key}
    verdict = await ObjectPolicy().judge(plan, session, PolicyGrant())
    assert verdict.refusal is not None
    assert verdict.refusal.detail().code == "PERMISSION_DENIED"
    assert verdict.refusal.subject == "Namespace made-by-custom"
    assert "--allow-elevated-objects" in verdict.refusal.detail().suggested_remediation
    allowed = await ObjectPolicy().judge(plan, session, PolicyGrant(elevated=True))
    assert allowed.refusal is None


async def test_custom_resources_of_cluster_scoped_crds_are_recognised(
    planner: Planner, session: ClusterSession
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "globals.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"kind": "Global", "plural": "globals", "singular": "global"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    await session.apply(crd)
    body = "apiVersion: example.com/v1\nkind: Global\nmetadata: {name: g}\n"
    plan = await plan_of(planner, session, "custom", custom_body=body)
    assert "namespace" not in plan.objects[0]["metadata"]
    verdict = await ObjectPolicy().judge(plan, session, PolicyGrant())
    assert verdict.refusal is not None and verdict.refusal.subject == "Global g"


def _bomb(levels: int) -> str:
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: bomb}", "data:", "  l0: &l0 x"]
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


YAML_BOMB = _bomb(6)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("", "empty"),
        (YAML_BOMB, "YAML bomb"),
        ("x" * (CUSTOM_MAX_BYTES + 1), "limit"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n", "metadata.name"),
        ("just a string\n", "not a mapping"),
    ],
)
async def test_custom_body_is_refused_with_a_reason(
    planner: Planner, session: ClusterSession, body: str, fragment: str
) -> None:
    with pytest.raises(PlanError) as caught:
        await plan_of(planner, session, "custom", custom_body=body)
    assert caught.value.detail.code == "INVALID_ARGUMENT"
    assert fragment in caught.value.detail.message
    # Admission reads the body by the same rules: the verdicts cannot drift apart.
    admitted = check_custom_body(
        body, CustomBodyPolicy(namespace="default", namespace_sent=False, objects=None)
    )
    assert isinstance(admitted, FieldProblem), admitted
    assert caught.value.detail.message == f"custom_body: {admitted.message}"


async def test_renders_are_cached_by_what_decides_them(
    planner: Planner, session: ClusterSession, tmp_path: Path
) -> None:
    cache = planner.render_cache.directory
    assert cache is not None
    first = await plan_of(planner, session, "install", parameters={"profile": "demo"})
    entries = sorted(cache.iterdir())
    assert len(entries) == 4  # base, istiod and two gateways
    again = await plan_of(planner, session, "install", parameters={"profile": "demo"})
    assert again == first
    assert sorted(cache.iterdir()) == entries
    await plan_of(planner, session, "install", parameters={"profile": "default"})
    assert len(list(cache.iterdir())) == 7  # other values: base, istiod, ingress rendered anew
    entries[0].write_text("{not json", encoding="utf-8")
    assert await plan_of(planner, session, "install", parameters={"profile": "demo"}) == first


async def test_samples_come_from_upstream_at_the_mesh_version(
    tmp_path: Path,
    session: ClusterSession,
    toy_chart_server: StaticHttpServer,
    static_http_server: Callable[[Path], StaticHttpServer],
) -> None:
    upstream = tmp_path / "upstream"
    for version in ("1.0.0", "1.1.0"):
        target = upstream / version / "samples/bookinfo/platform/kube/bookinfo.yaml"
        target.parent.mkdir(parents=True)
        shutil.copy(TOY_MIRROR / "apps" / "bookinfo.yaml", target)
    server = static_http_server(upstream)
    planner = Planner(
        DECLARATION,
        charts=ChartRepository(toy_chart_server.url, tmp_path / "cache", timeout=5.0),
        manifests=ManifestLibrary(
            upstream_url=server.url + "{version}/", cache_dir=tmp_path / "cache"
        ),
    )
    newest = await planner.plan(spec("bookinfo"), record("bookinfo"), session)
    assert newest.metadata["mesh_version"] == "1.1.0"
    assert server.requests("/1.1.0/samples/bookinfo/platform/kube/bookinfo.yaml") == 1
    installed = await planner.plan(
        spec("bookinfo"), record("bookinfo"), session, mesh_version="1.0.0"
    )
    assert installed.objects == newest.objects
    assert server.requests("/1.0.0/samples/bookinfo/platform/kube/bookinfo.yaml") == 1


async def test_mirrored_samples_need_no_chart_repository(
    tmp_path: Path, session: ClusterSession, toy_mirror_server: StaticHttpServer
) -> None:
    planner = Planner(
        DECLARATION,
        charts=ChartRepository("http://127.0.0.1:9/", tmp_path / "cache", attempts=1),
        manifests=ManifestLibrary(
            upstream_url=DECLARATION.manifests_url,
            mirror_url=toy_mirror_server.url,
            cache_dir=tmp_path / "cache",
        ),
    )
    plan = await planner.plan(spec("httpbin"), record("httpbin"), session)
    assert [o["kind"] for o in plan.objects] == ["ServiceAccount", "Service", "Deployment"]
