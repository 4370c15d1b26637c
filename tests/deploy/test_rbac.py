"""The adapter's ClusterRole: derived from what its charts, manifests and checks use; the
committed copy in the chart is what `meshplane rbac` prints, misses nothing and grants nothing
unused."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.istio.declaration import DECLARATION as ISTIO
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category, OperationSpec
from adapters.kit.declare.sources import ObjectsSource, PlanContext
from adapters.kit.model.objects import KubeObject
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.process.mesh_registry import load_declaration
from adapters.kit.run.executor.chart_versions import install_chart
from adapters.rbac.collecting import RbacError
from adapters.rbac.derivation import derive, derive_for_mesh
from adapters.rbac.permissions import Permission, UrlPermission, expand_rule, rules_cover
from adapters.rbac.requirements import Requirements, unused_permissions
from adapters.rbac.resource_names import BUILTIN_RESOURCES
from adapters.rbac.role_document import cluster_role
from kubesim.resources import ResourceRegistry
from meshplane_cli.main import main
from tests.adapters.istio.toy_istio import TOY_MIRROR, TOY_VERSIONS, package_toy_repo
from tests.deploy.chart import committed_role, meshes_with_rbac, rbac_file
from tests.fixtures_paths import PROJECT_ROOT, shared_fixtures


def P(group: str, resource: str, verb: str, name: str = "") -> Permission:
    return Permission(group=group, resource=resource, verb=verb, name=name)


# -- rule arithmetic -------------------------------------------------------------------------


def test_expand_rule() -> None:
    permissions, urls = expand_rule(
        {
            "apiGroups": ["", "apps"],
            "resources": ["pods", "deployments"],
            "verbs": ["get"],
            "resourceNames": ["a"],
        }
    )
    assert permissions == {
        P(g, r, "get", "a") for g in ("", "apps") for r in ("pods", "deployments")
    }
    assert urls == set()
    _, urls = expand_rule({"nonResourceURLs": ["/metrics"], "verbs": ["get"]})
    assert urls == {UrlPermission(url="/metrics", verb="get")}


@pytest.mark.parametrize(
    ("rule", "wanted", "covered"),
    [
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            P("apps", "deployments", "get"),
            True,
        ),
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            P("apps", "deployments", "list"),
            False,
        ),
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
            P("", "deployments", "get"),
            False,
        ),
        (
            {"apiGroups": ["x.io"], "resources": ["*"], "verbs": ["get"]},
            P("x.io", "a", "get"),
            True,
        ),
        ({"apiGroups": ["*"], "resources": ["a"], "verbs": ["*"]}, P("y.io", "a", "patch"), True),
        (
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            P("", "pods/log", "get"),
            False,
        ),
        (
            {"apiGroups": [""], "resources": ["*/scale"], "verbs": ["get"]},
            P("", "deployments/scale", "get"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s"]},
            P("", "secrets", "get"),
            False,
        ),
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["s"]},
            P("", "secrets", "get", "s"),
            True,
        ),
        (
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
            P("", "secrets", "get", "s"),
            True,
        ),
        (
            {"nonResourceURLs": ["/metrics*"], "verbs": ["get"]},
            UrlPermission(url="/metrics/cadvisor", verb="get"),
            True,
        ),
        (
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            UrlPermission(url="/healthz", verb="get"),
            False,
        ),
    ],
)
def test_rules_cover(
    rule: dict[str, Any], wanted: Permission | UrlPermission, covered: bool
) -> None:
    assert rules_cover([rule], wanted) is covered


def test_rules_merge_and_drop_what_wildcards_grant() -> None:
    needed = Requirements(
        mesh="toy",
        permissions={
            P("apps", "deployments", "get"): "a",
            P("apps", "deployments", "patch"): "a",
            P("apps", "statefulsets", "get"): "b",
            P("apps", "statefulsets", "patch"): "b",
            P("x.io", "*", "list"): "held",
            P("x.io", "widgets", "list"): "c",
            P("x.io", "widgets", "create"): "c",
        },
        urls={UrlPermission(url="/metrics", verb="get"): "held"},
    )
    assert needed.rules() == [
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets"],
            "verbs": ["get", "patch"],
        },
        {"apiGroups": ["x.io"], "resources": ["widgets"], "verbs": ["create"]},
        {"apiGroups": ["x.io"], "resources": ["*"], "verbs": ["list"]},
        {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
    ]
    assert unused_permissions(needed.rules(), needed) == []
    extra = [*needed.rules(), {"apiGroups": [""], "resources": ["nodes"], "verbs": ["delete"]}]
    assert unused_permissions(extra, needed) == [P("", "nodes", "delete")]


# -- derivation on small declarations ----------------------------------------------------------


def _declaration(objects: Sequence[KubeObject], *, check: Any = None) -> MeshDeclaration:
    async def build(ctx: PlanContext) -> Sequence[KubeObject]:
        return list(objects)

    return MeshDeclaration(
        mesh="toy",
        default_port=1,
        chart_repository="unused",
        manifests_url="unused",
        default_namespace="toy",
        operations=(
            OperationSpec(
                id="apply",
                category=Category.CONFIGURE,
                description="apply the objects",
                default_namespace="toy",
                sources=(ObjectsSource(build=build),),
            ),
            OperationSpec(
                id="check",
                category=Category.VALIDATE,
                description="look around",
                default_namespace="toy",
                check=check,
                supports_delete=False,
            ),
        ),
    )


async def _derive_small(declaration: MeshDeclaration, tmp_path: Path) -> Requirements:
    return await derive(
        declaration,
        charts=ChartRepository(str(tmp_path), tmp_path / "cache"),
        manifests=ManifestLibrary(upstream_url="unused", cache_dir=tmp_path / "cache"),
        install_chart="none",
        versions=["1.0.0"],
    )


async def test_roles_and_bindings_need_what_they_grant_or_bind(tmp_path: Path) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "toy-controller"},
        "rules": [{"apiGroups": ["x.io"], "resources": ["*"], "verbs": ["watch"]}],
    }
    aggregated = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "toy-view"},
        "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"toy": "view"}}]},
    }
    own = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "toy-controller"},
        "roleRef": {
            "kind": "ClusterRole",
            "name": "toy-controller",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    }
    external = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "toy-auth"},
        "roleRef": {
            "kind": "ClusterRole",
            "name": "system:auth-delegator",
            "apiGroup": "rbac.authorization.k8s.io",
        },
    }
    needed = await _derive_small(_declaration([role, aggregated, own, external]), tmp_path)
    rbac = "rbac.authorization.k8s.io"
    assert P("x.io", "*", "watch") in needed.permissions
    assert P(rbac, "clusterroles", "escalate") in needed.permissions
    assert P(rbac, "clusterroles", "bind", "system:auth-delegator") in needed.permissions
    # A rendered role too: the binding may be applied before the role exists.
    assert P(rbac, "clusterroles", "bind", "toy-controller") in needed.permissions
    for verb in ("create", "patch", "get", "list", "delete"):
        assert P(rbac, "clusterroles", verb) in needed.permissions
        assert P(rbac, "clusterrolebindings", verb) in needed.permissions


async def test_kinds_resolve_through_builtins_and_rendered_crds(tmp_path: Path) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.x.io"},
        "spec": {
            "group": "x.io",
            "names": {"kind": "Widget", "plural": "widgets"},
            "scope": "Namespaced",
        },
    }
    widget = {"apiVersion": "x.io/v1", "kind": "Widget", "metadata": {"name": "w"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    needed = await _derive_small(_declaration([crd, widget, deployment]), tmp_path)
    assert P("x.io", "widgets", "create") in needed.permissions
    assert P("apps", "deployments", "delete") in needed.permissions
    # A stuck Deployment is explained from its pods; the kit's inventory and namespaces.
    assert P("", "pods", "list") in needed.permissions
    assert {P("", "secrets", v) for v in ("get", "patch", "create", "delete")} <= set(
        needed.permissions
    )
    assert {P("", "namespaces", v) for v in ("get", "patch", "create")} <= set(needed.permissions)
    assert not any(p.verb in ("watch", "update", "*") for p in needed.permissions)


async def test_a_kind_with_no_known_resource_is_an_error(tmp_path: Path) -> None:
    gadget = {"apiVersion": "y.io/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    with pytest.raises(RbacError, match=r"Gadget\.y\.io"):
        await _derive_small(_declaration([gadget]), tmp_path)


async def test_checks_reads_are_recorded(tmp_path: Path) -> None:
    from adapters.kit.declare.checks import CheckContext, Finding

    async def check(ctx: CheckContext) -> Sequence[Finding]:
        for namespace in await ctx.cluster.list("v1", "Namespace"):
            await ctx.cluster.list("v1", "Pod", namespace["metadata"]["name"])
        await ctx.cluster.get("apps/v1", "Deployment", "d", ctx.namespace)
        return []

    needed = await _derive_small(_declaration([], check=check), tmp_path)
    assert P("", "pods", "list") in needed.permissions  # reached through the sample namespace
    assert P("apps", "deployments", "get") in needed.permissions
    assert P("apps", "deployments", "patch") not in needed.permissions


# -- the istio adapter ---------------------------------------------------------------------------


def _missing(rules: Sequence[dict[str, Any]], needed: Requirements) -> list[str]:
    wanted, urls = needed.minimal()
    missing = [
        f"{p} (needed by {needed.permissions[p]})"
        for p in sorted(wanted)
        if not rules_cover(rules, p)
    ]
    missing += [
        f"{u} (needed by {needed.urls[u]})" for u in sorted(urls) if not rules_cover(rules, u)
    ]
    return missing


async def test_toy_istio_needs_nothing_the_committed_role_lacks(tmp_path: Path) -> None:
    repo = package_toy_repo(tmp_path / "charts")
    needed = await derive(
        ISTIO,
        charts=ChartRepository(str(repo), tmp_path / "cache"),
        manifests=ManifestLibrary(
            upstream_url=ISTIO.manifests_url, mirror_url=str(TOY_MIRROR), cache_dir=tmp_path / "m"
        ),
        install_chart=install_chart(ISTIO),
    )
    assert P("networking.istio.io", "virtualservices", "list") in needed.permissions  # validate
    assert P("security.istio.io", "peerauthentications", "create") in needed.permissions
    assert P("", "namespaces", "list") in needed.permissions  # injection namespaces
    assert P("", "namespaces", "delete") not in needed.permissions  # label-namespace owns fields
    assert _missing(committed_role("istio")["rules"], needed) == []
    # Every toy chart version was rendered: a version-specific kind would show up.
    assert sorted(needed.versions) == sorted(TOY_VERSIONS)


_DERIVED: dict[str, Requirements] = {}


def _shared(mesh: str, cache: Path) -> Requirements:
    """What ``mesh``'s adapter needs over every chart version in the shared fixtures (once)."""
    mirror = shared_fixtures()
    if mesh not in _DERIVED:
        declaration = load_declaration(mesh)
        _DERIVED[mesh] = asyncio.run(derive_for_mesh(declaration, mirror=mirror, cache_dir=cache))
    return _DERIVED[mesh]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rbac-cache")


@pytest.mark.parametrize("mesh", meshes_with_rbac())
def test_committed_role_is_what_meshplane_rbac_derives(mesh: str, shared_cache: Path) -> None:
    """Drift check: regenerate with `meshplane rbac MESH --mirror ../shared/fixtures`."""
    assert committed_role(mesh) == cluster_role(_shared(mesh, shared_cache))


@pytest.mark.parametrize("mesh", meshes_with_rbac())
def test_committed_role_misses_nothing_and_grants_nothing_unused(
    mesh: str, shared_cache: Path
) -> None:
    needed = _shared(mesh, shared_cache)
    rules = committed_role(mesh)["rules"]
    assert _missing(rules, needed) == []
    assert unused_permissions(rules, needed) == []
    # Every chart version in the shared repository was rendered.
    assert len(needed.versions) == 2
    # The roles the mesh's charts create are held, not escalated; nothing cluster-admin-like.
    assert not rules_cover(rules, P("*", "*", "*"))
    assert not rules_cover(
        rules, P("rbac.authorization.k8s.io", "clusterroles", "bind", "cluster-admin")
    )
    assert not rules_cover(rules, P("", "nodes", "delete"))


def test_shared_istio_versions(shared_cache: Path) -> None:
    needed = _shared("istio", shared_cache)
    assert sorted(needed.versions) == ["1.29.6", "1.30.3"]
    assert not rules_cover(
        committed_role("istio")["rules"], P("rbac.authorization.k8s.io", "clusterroles", "escalate")
    )


@pytest.mark.parametrize("mesh", meshes_with_rbac())
def test_every_committed_role_is_a_generated_cluster_role(mesh: str) -> None:
    role = committed_role(mesh)
    assert role["kind"] == "ClusterRole"
    assert role["metadata"]["labels"]["meshplane.io/adapter"] == mesh
    assert not rules_cover(role["rules"], P("*", "*", "*"))
    text = rbac_file(mesh).read_text(encoding="utf-8")
    assert text.startswith(f"# Generated by `meshplane rbac {mesh}`")


def test_meshplane_rbac_prints_the_cluster_role(tmp_path: Path) -> None:
    repo = package_toy_repo(tmp_path / "charts")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "meshplane_cli.main",
            "rbac",
            "istio",
            "--chart-repo",
            str(repo),
            "--manifests-url",
            str(TOY_MIRROR),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--name",
            "toy-role",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=PROJECT_ROOT,
    )
    assert done.returncode == 0, done.stderr
    role = yaml.safe_load(done.stdout)
    assert role["kind"] == "ClusterRole"
    assert role["metadata"]["name"] == "toy-role"
    assert {
        "apiGroups": [""],
        "resources": ["namespaces"],
        "verbs": ["create", "get", "list", "patch"],
    } in role["rules"]


@pytest.mark.parametrize("mesh", ["no-such-mesh", "adapters.rbac.permissions:Permission"])
def test_meshplane_rbac_refuses_what_is_not_a_mesh(
    mesh: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rbac", mesh]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert mesh in captured.err


def test_builtin_resource_names_agree_with_kubesim() -> None:
    """The table of built-in kinds against kubesim's own (an independent list of the same
    API surface): every kind both know has the same resource name."""
    served = {(rt.group, rt.kind): rt.plural for rt in ResourceRegistry()}
    shared = set(served) & set(BUILTIN_RESOURCES)
    assert len(shared) >= 30
    assert {key: BUILTIN_RESOURCES[key] for key in shared} == {key: served[key] for key in shared}
