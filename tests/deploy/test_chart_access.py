"""The chart's access settings: Kubernetes-mode auth on by default (the coordinator may create
TokenReviews and SubjectAccessReviews), the coordinator-adapter link token from a generated or
given Secret, and example ClusterRoles that grant meshplane's roles through RBAC (checked by
SubjectAccessReviews against kubesim)."""

from __future__ import annotations

import base64
import importlib.util
from typing import Any

import pytest
import yaml

from adapters.kit.plan.rendering import ChartRenderError
from kubesim.harness import RunningSim
from tests.deploy.chart import CHART, NAMESPACE, container, env_of, find, of_kind, render
from tests.kubesim.support import raw_request

ADAPTER = "mp-meshplane-adapter-istio"
COORDINATOR = "mp-meshplane-coordinator"
LINK_SECRET = "mp-meshplane-link"
LINK_FILE = "/etc/meshplane/link/token"
ROLES = ("viewer", "operator", "admin")


def _volume(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = (v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == name)
    assert isinstance(found, dict)
    return found


def _mount_names(deployment: dict[str, Any]) -> set[str]:
    return {m["name"] for m in container(deployment)["volumeMounts"]}


async def test_kubernetes_auth_is_on_by_default() -> None:
    objects = (await render()).objects
    coordinator = find(objects, "Deployment", COORDINATOR)
    env = env_of(coordinator)
    assert env["MESHPLANE_COORDINATOR_AUTHN_KUBERNETES"] == "true"
    assert env["MESHPLANE_COORDINATOR_AUTHZ_KUBERNETES"] == "true"
    assert "MESHPLANE_COORDINATOR_ALLOW_ANONYMOUS" not in env
    assert coordinator["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    role = find(objects, "ClusterRole", f"{NAMESPACE}-{COORDINATOR}")
    assert role["rules"] == [
        {
            "apiGroups": ["authentication.k8s.io"],
            "resources": ["tokenreviews"],
            "verbs": ["create"],
        },
        {
            "apiGroups": ["authorization.k8s.io"],
            "resources": ["subjectaccessreviews"],
            "verbs": ["create"],
        },
    ]
    binding = find(objects, "ClusterRoleBinding", f"{NAMESPACE}-{COORDINATOR}")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": COORDINATOR, "namespace": NAMESPACE}
    ]


async def test_other_ways_in() -> None:
    values = {
        "auth": {
            "kubernetes": {"enabled": True, "audiences": ["meshplane", "api"]},
            "tokenFile": {"existingSecret": "meshplane-tokens", "key": "users.csv"},
        }
    }
    coordinator = find((await render(values)).objects, "Deployment", COORDINATOR)
    env = env_of(coordinator)
    assert env["MESHPLANE_COORDINATOR_AUTHN_KUBERNETES_AUDIENCES"] == "meshplane,api"
    assert env["MESHPLANE_COORDINATOR_TOKEN_AUTH_FILE"] == "/etc/meshplane/auth/tokens.csv"
    assert _volume(coordinator, "auth-tokens")["secret"] == {
        "secretName": "meshplane-tokens",
        "items": [{"key": "users.csv", "path": "tokens.csv"}],
        "defaultMode": 0o440,
    }
    assert "auth-tokens" in _mount_names(coordinator)

    anonymous = {
        "auth": {"kubernetes": {"enabled": False}, "allowAnonymous": True},
        "coordinator": {"discovery": {"enabled": False}},
    }
    objects = (await render(anonymous)).objects
    coordinator = find(objects, "Deployment", COORDINATOR)
    env = env_of(coordinator)
    assert env["MESHPLANE_COORDINATOR_ALLOW_ANONYMOUS"] == "true"
    assert "MESHPLANE_COORDINATOR_AUTHN_KUBERNETES" not in env
    assert coordinator["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert not [r for r in of_kind(objects, "ClusterRole") if COORDINATOR in r["metadata"]["name"]]


async def test_a_coordinator_nobody_can_authenticate_to_is_refused() -> None:
    with pytest.raises(ChartRenderError, match="needs a way to authenticate callers"):
        await render({"auth": {"kubernetes": {"enabled": False}}})


async def test_the_link_token_is_generated_and_mounted_in_every_pod() -> None:
    objects = (await render()).objects
    secret = find(objects, "Secret", LINK_SECRET)
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert len(token) == 64 and token.isalnum()
    again = find((await render()).objects, "Secret", LINK_SECRET)
    assert again["data"]["token"] != secret["data"]["token"]  # random, not a fixed default
    for name, variable in (
        (ADAPTER, "MESHPLANE_ADAPTER_COORDINATOR_TOKEN_FILE"),
        (COORDINATOR, "MESHPLANE_COORDINATOR_ADAPTER_TOKEN_FILE"),
    ):
        deployment = find(objects, "Deployment", name)
        assert env_of(deployment)[variable] == LINK_FILE
        assert _volume(deployment, "link")["secret"] == {
            "secretName": LINK_SECRET,
            "items": [{"key": "token", "path": "token"}],
            "defaultMode": 0o440,
        }
        assert "link" in _mount_names(deployment)


async def test_the_link_token_from_your_secret_or_off() -> None:
    objects = (await render({"link": {"existingSecret": "our-link", "key": "value"}})).objects
    assert not of_kind(objects, "Secret")
    for name in (ADAPTER, COORDINATOR):
        assert _volume(find(objects, "Deployment", name), "link")["secret"]["items"] == [
            {"key": "value", "path": "token"}
        ]
        assert _volume(find(objects, "Deployment", name), "link")["secret"]["secretName"] == (
            "our-link"
        )
    objects = (await render({"link": {"enabled": False}})).objects
    assert not of_kind(objects, "Secret")
    for name in (ADAPTER, COORDINATOR):
        deployment = find(objects, "Deployment", name)
        assert "link" not in _mount_names(deployment)
        assert not [k for k in env_of(deployment) if k.endswith("TOKEN_FILE")]


def _committed_rules() -> dict[str, list[dict[str, Any]]]:
    loaded = yaml.safe_load((CHART / "files" / "meshplane-roles.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


async def test_example_roles_are_the_committed_rules() -> None:
    objects = (await render()).objects
    committed = _committed_rules()
    assert sorted(committed) == sorted(ROLES)
    for role in ROLES:
        cluster_role = find(objects, "ClusterRole", f"meshplane-{role}")
        assert cluster_role["rules"] == committed[role]
        assert all(rule["apiGroups"] == ["meshplane.io"] for rule in cluster_role["rules"])
    resources = {r for rules in committed.values() for rule in rules for r in rule["resources"]}
    assert {"operations", "adapters", "performancetests", "events", "auditrecords"} <= resources
    objects = (await render({"auth": {"exampleRoles": {"enabled": False}}})).objects
    names = {r["metadata"]["name"] for r in of_kind(objects, "ClusterRole")}
    assert not names & {f"meshplane-{role}" for role in ROLES}


@pytest.mark.skipif(
    importlib.util.find_spec("coordinator.server.identity") is None,
    reason="the coordinator's permission table (server/identity/permissions.py) is not here",
)
def test_example_roles_grant_what_the_coordinator_checks() -> None:
    from coordinator.server.identity import permissions  # type: ignore[import-not-found, unused-ignore]

    committed = _committed_rules()
    for role in ROLES:
        expected = permissions.cluster_role_rules(permissions.Role[role.upper()])
        assert committed[role] == expected, f"regenerate files/meshplane-roles.yaml ({role})"


def _allowed(sim: RunningSim, verb: str, resource: str, namespace: str, **who: Any) -> bool:
    spec = {
        **who,
        "resourceAttributes": {
            "verb": verb,
            "group": "meshplane.io",
            "resource": resource,
            "namespace": namespace,
        },
    }
    status, answer = raw_request(
        sim, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {"spec": spec}
    )
    assert status == 201, answer
    return bool(answer["status"]["allowed"])


RBAC = "/apis/rbac.authorization.k8s.io/v1"


def _binding(name: str, role: str, subject: dict[str, str]) -> dict[str, Any]:
    """A (Cluster)RoleBinding of the ClusterRole ``role`` to one ``subject``."""
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", **subject}],
    }


def install_example_roles(sim: RunningSim, objects: list[dict[str, Any]]) -> None:
    """The chart's example ClusterRoles and the coordinator's review role and its binding."""
    for role in ROLES:
        cluster_role = find(objects, "ClusterRole", f"meshplane-{role}")
        status, answer = raw_request(sim, "POST", f"{RBAC}/clusterroles", cluster_role)
        assert status == 201, answer
    review_role = find(objects, "ClusterRole", f"{NAMESPACE}-{COORDINATOR}")
    review_binding = find(objects, "ClusterRoleBinding", f"{NAMESPACE}-{COORDINATOR}")
    for path, body in (
        (f"{RBAC}/clusterroles", review_role),
        (f"{RBAC}/clusterrolebindings", review_binding),
    ):
        status, answer = raw_request(sim, "POST", path, body)
        assert status == 201, answer


def bind_team_a_and_root(sim: RunningSim) -> None:
    """Group team-a operates in namespace apps; user root administers the whole cluster."""
    for path, body in (
        ("/api/v1/namespaces", {"metadata": {"name": "apps"}}),
        (
            f"{RBAC}/namespaces/apps/rolebindings",
            _binding("team-a-operators", "meshplane-operator", {"kind": "Group", "name": "team-a"}),
        ),
        (
            f"{RBAC}/clusterrolebindings",
            _binding("platform-admins", "meshplane-admin", {"kind": "User", "name": "root"}),
        ),
    ):
        status, answer = raw_request(sim, "POST", path, body)
        assert status == 201, answer


def assert_bindings_grant_their_roles(sim: RunningSim) -> None:
    team_a = {"user": "dev", "groups": ["team-a", "system:authenticated"]}
    assert _allowed(sim, "create", "operations", "apps", **team_a)
    assert _allowed(sim, "list", "operations", "apps", **team_a)
    assert not _allowed(sim, "create", "operations", "other", **team_a)
    assert not _allowed(sim, "create", "meshes", "apps", **team_a)
    assert not _allowed(sim, "list", "auditrecords", "", **team_a)
    root = {"user": "root"}
    assert _allowed(sim, "create", "meshes", "istio-system", **root)
    assert _allowed(sim, "list", "auditrecords", "", **root)
    assert not _allowed(sim, "list", "operations", "apps", user="stranger")


def assert_coordinator_may_review_and_nothing_else(sim: RunningSim) -> None:
    """The coordinator's own ServiceAccount may ask the reviews it needs, and nothing else."""
    account = f"system:serviceaccount:{NAMESPACE}:{COORDINATOR}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"]
    for group, resource in (
        ("authentication.k8s.io", "tokenreviews"),
        ("authorization.k8s.io", "subjectaccessreviews"),
    ):
        _, answer = raw_request(
            sim,
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "spec": {
                    "user": account,
                    "groups": groups,
                    "resourceAttributes": {"verb": "create", "group": group, "resource": resource},
                }
            },
        )
        assert answer["status"]["allowed"] is True, (resource, answer)
    assert not _allowed(sim, "list", "operations", "apps", user=account, groups=groups)


async def test_bound_example_roles_grant_meshplane_permissions_in_the_cluster(
    kubesim: RunningSim,
) -> None:
    install_example_roles(kubesim, (await render()).objects)
    bind_team_a_and_root(kubesim)
    assert_bindings_grant_their_roles(kubesim)
    assert_coordinator_may_review_and_nothing_else(kubesim)
