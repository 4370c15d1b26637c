"""SubjectAccessReview and friends over HTTP, decided by RBAC over the stored Roles,
ClusterRoles (aggregated ones too) and their bindings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from kubesim.harness import RunningSim
from tests.kubesim.support import crd, eventually, kubectl_binary, raw_request

AUTHZ = "/apis/authorization.k8s.io/v1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
SA_GROUPS = ("system:serviceaccounts", "system:authenticated")


def _post(sim: RunningSim, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = raw_request(sim, "POST", path, body)
    assert status == 201, answer
    result: dict[str, Any] = answer
    return result


def _put(sim: RunningSim, path: str, body: dict[str, Any]) -> None:
    status, answer = raw_request(sim, "PUT", path, body)
    assert status == 200, answer


def _namespace(sim: RunningSim, name: str) -> None:
    _post(sim, "/api/v1/namespaces", {"metadata": {"name": name}})


def _role(sim: RunningSim, name: str, rules: list[dict[str, Any]], namespace: str = "") -> None:
    path = f"{RBAC}/namespaces/{namespace}/roles" if namespace else f"{RBAC}/clusterroles"
    _post(sim, path, {"metadata": {"name": name}, "rules": rules})


def _binding(
    sim: RunningSim,
    name: str,
    role: str,
    subjects: list[dict[str, Any]],
    *,
    namespace: str = "",
    role_kind: str = "ClusterRole",
) -> dict[str, Any]:
    body = {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects,
    }
    if namespace:
        return _post(sim, f"{RBAC}/namespaces/{namespace}/rolebindings", body)
    return _post(sim, f"{RBAC}/clusterrolebindings", body)


def _user(name: str) -> dict[str, Any]:
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def _group(name: str) -> dict[str, Any]:
    return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": name}


def review(
    sim: RunningSim,
    user: str = "",
    *,
    groups: tuple[str, ...] = (),
    verb: str = "get",
    resource: str = "pods",
    group: str = "",
    namespace: str = "",
    subresource: str = "",
    name: str = "",
    path: str = "",
) -> dict[str, Any]:
    """One SubjectAccessReview; its status."""
    spec: dict[str, Any] = {"user": user, "groups": list(groups)}
    if path:
        spec["nonResourceAttributes"] = {"path": path, "verb": verb}
    else:
        spec["resourceAttributes"] = {
            "verb": verb,
            "group": group,
            "resource": resource,
            "namespace": namespace,
            "subresource": subresource,
            "name": name,
        }
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    answer = _post(sim, f"{AUTHZ}/subjectaccessreviews", body)
    assert answer["spec"] == spec
    status: dict[str, Any] = answer["status"]
    return status


def allowed(sim: RunningSim, user: str = "", **kwargs: Any) -> bool:
    return bool(review(sim, user, **kwargs)["allowed"])


OPERATIONS = {"apiGroups": ["meshplane.io"], "resources": ["operations"], "verbs": ["get", "list"]}


def test_editing_a_role_binding_changes_the_decision(kubesim: RunningSim) -> None:
    _namespace(kubesim, "team")
    _role(kubesim, "reader", [OPERATIONS], namespace="team")
    ask = {"group": "meshplane.io", "resource": "operations", "namespace": "team"}
    assert review(kubesim, "alice", **ask) == {"allowed": False}

    binding = _binding(
        kubesim, "readers", "reader", [_user("alice")], namespace="team", role_kind="Role"
    )
    assert review(kubesim, "alice", **ask) == {
        "allowed": True,
        "reason": 'RBAC: allowed by RoleBinding "readers/team" of Role "reader" to User "alice"',
    }
    # the binding grants only in its namespace, only the role's verbs, only to its subjects
    assert not allowed(kubesim, "alice", **{**ask, "namespace": "other"})
    assert not allowed(kubesim, "alice", **{**ask, "namespace": ""})
    assert not allowed(kubesim, "alice", **{**ask, "verb": "delete"})
    assert not allowed(kubesim, "alice", **{**ask, "group": ""})
    assert not allowed(kubesim, "bob", **ask)

    binding["subjects"] = [_user("bob")]
    _put(kubesim, f"{RBAC}/namespaces/team/rolebindings/readers", binding)
    assert not allowed(kubesim, "alice", **ask)
    assert allowed(kubesim, "bob", **ask)

    raw_request(kubesim, "DELETE", f"{RBAC}/namespaces/team/rolebindings/readers")
    assert not allowed(kubesim, "bob", **ask)

    # a ClusterRole bound cluster-wide grants in every namespace and cluster-wide requests
    _role(kubesim, "ops-reader", [OPERATIONS])
    _binding(kubesim, "ops", "ops-reader", [_group("meshplane:viewers")])
    for namespace in ("team", "other", ""):
        assert allowed(
            kubesim, "carol", groups=("meshplane:viewers",), **{**ask, "namespace": namespace}
        )
    # a binding to a role that does not exist grants nothing
    _binding(kubesim, "dangling", "no-such-role", [_user("dave")])
    assert not allowed(kubesim, "dave", **ask)


def test_rule_matching(kubesim: RunningSim) -> None:
    _role(
        kubesim,
        "mixed",
        [
            {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
            {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["update"]},
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["*"],
                "resourceNames": ["a"],
            },
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["watch"]},
            {"nonResourceURLs": ["/healthz", "/metrics/*"], "verbs": ["get"]},
        ],
    )
    _binding(kubesim, "mixed", "mixed", [_user("u")])
    cases = [
        ({"resource": "pods", "subresource": "log"}, True),
        ({"resource": "pods"}, False),  # the subresource grants nothing on the resource
        ({"resource": "pods", "subresource": "exec"}, False),
        (
            {"group": "apps", "resource": "deployments", "subresource": "scale", "verb": "update"},
            True,
        ),
        ({"group": "apps", "resource": "deployments", "verb": "update"}, False),
        ({"group": "", "resource": "pods", "subresource": "scale", "verb": "update"}, False),
        ({"resource": "configmaps", "name": "a", "verb": "delete"}, True),
        ({"resource": "configmaps", "name": "b", "verb": "delete"}, False),
        ({"resource": "configmaps", "verb": "list"}, False),  # resourceNames need a name
        ({"group": "example.com", "resource": "widgets", "verb": "watch"}, True),
        ({"path": "/healthz"}, True),
        ({"path": "/healthz/etcd"}, False),
        ({"path": "/metrics/cadvisor"}, True),
        ({"path": "/metrics", "verb": "post"}, False),
    ]
    for ask, expected in cases:
        assert allowed(kubesim, "u", **ask) is expected, ask

    # non-resource rules count only through ClusterRoleBindings
    _namespace(kubesim, "team")
    _binding(kubesim, "urls", "mixed", [_user("v")], namespace="team")
    assert allowed(kubesim, "v", resource="pods", subresource="log", namespace="team")
    assert not allowed(kubesim, "v", path="/healthz")


def test_aggregated_cluster_roles(kubesim: RunningSim) -> None:
    label = "meshplane.io/aggregate-to-viewer"
    _post(
        kubesim,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "viewer"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]},
        },
    )
    _binding(kubesim, "viewers", "viewer", [_group("viewers")])
    ask = {"groups": ("viewers",), "group": "meshplane.io", "resource": "operations"}
    assert not allowed(kubesim, "x", **ask)

    _post(
        kubesim,
        f"{RBAC}/clusterroles",
        {"metadata": {"name": "ops-part", "labels": {label: "true"}}, "rules": [OPERATIONS]},
    )
    assert review(kubesim, "x", **ask) == {
        "allowed": True,
        "reason": 'RBAC: allowed by ClusterRoleBinding "viewers" of ClusterRole "viewer" to '
        'Group "viewers"',
    }
    # the aggregation controller writes the selected rules into the aggregated role

    def rules() -> Any:
        _, role = raw_request(kubesim, "GET", f"{RBAC}/clusterroles/viewer")
        return role.get("rules")

    assert eventually(rules) == [OPERATIONS]

    # aggregation nests: an aggregated role selected by another brings its own selection
    _post(
        kubesim,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "editor-part", "labels": {label: "true"}},
            "aggregationRule": {
                "clusterRoleSelectors": [
                    {"matchLabels": {"meshplane.io/aggregate-to-editor": "true"}}
                ]
            },
        },
    )
    events = {"apiGroups": ["meshplane.io"], "resources": ["events"], "verbs": ["list"]}
    _post(
        kubesim,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": "events", "labels": {"meshplane.io/aggregate-to-editor": "true"}},
            "rules": [events],
        },
    )
    assert allowed(kubesim, "x", **{**ask, "resource": "events", "verb": "list"})
    assert eventually(lambda: (rules() or []) == [OPERATIONS, events] and rules())

    # dropping the label takes the rules away again
    status, _ = raw_request(
        kubesim,
        "PATCH",
        f"{RBAC}/clusterroles/ops-part",
        {"metadata": {"labels": {label: None}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert not allowed(kubesim, "x", **ask)
    assert eventually(lambda: rules() == [events])


def test_service_account_subjects_and_groups(kubesim: RunningSim) -> None:
    for namespace in ("team", "other"):
        _namespace(kubesim, namespace)
        _post(
            kubesim, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "ci"}}
        )
    _role(kubesim, "reader", [OPERATIONS])
    ask = {"group": "meshplane.io", "resource": "operations", "namespace": "team"}

    def sa(namespace: str) -> dict[str, Any]:
        # the groups the apiserver's TokenReview gives a ServiceAccount token
        status, body = raw_request(
            kubesim, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/ci/token", {}
        )
        assert status == 201, body
        _, reviewed = raw_request(
            kubesim,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"spec": {"token": body["status"]["token"]}},
        )
        user: dict[str, Any] = reviewed["status"]["user"]
        return {"user": user["username"], "groups": tuple(user["groups"])}

    team, other = sa("team"), sa("other")
    assert team["groups"] == (
        "system:serviceaccounts",
        "system:serviceaccounts:team",
        "system:authenticated",
    )
    assert not allowed(kubesim, **team, **ask)

    # a ServiceAccount subject without a namespace means the binding's own
    _binding(kubesim, "ci", "reader", [{"kind": "ServiceAccount", "name": "ci"}], namespace="team")
    assert allowed(kubesim, **team, **ask)
    assert not allowed(kubesim, **other, **{**ask, "namespace": "team"})
    raw_request(kubesim, "DELETE", f"{RBAC}/namespaces/team/rolebindings/ci")

    # every ServiceAccount of a namespace
    _binding(kubesim, "team-sas", "reader", [_group("system:serviceaccounts:team")])
    assert allowed(kubesim, **team, **ask)
    assert not allowed(kubesim, **other, **ask)
    # every ServiceAccount anywhere, and every authenticated user
    _binding(kubesim, "all-sas", "reader", [_group("system:serviceaccounts")])
    assert allowed(kubesim, **other, **ask)
    assert not allowed(kubesim, "alice", groups=("system:authenticated",), **ask)
    _binding(kubesim, "everyone", "reader", [_group("system:authenticated")])
    assert allowed(kubesim, "alice", groups=("system:authenticated",), **ask)
    # a ServiceAccount subject in a ClusterRoleBinding names its namespace
    _binding(
        kubesim,
        "ci-other",
        "reader",
        [{"kind": "ServiceAccount", "name": "ci", "namespace": "other"}],
    )
    assert review(kubesim, other["user"], **ask)["reason"].endswith('ServiceAccount "other/ci"')


def test_masters_and_refused_reviews(kubesim: RunningSim) -> None:
    assert allowed(kubesim, "root", groups=("system:masters",), verb="delete", resource="nodes")
    status, body = raw_request(
        kubesim,
        "POST",
        f"{AUTHZ}/subjectaccessreviews",
        {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
    )
    assert status == 422 and "at least one of user or group" in body["message"]
    status, body = raw_request(
        kubesim,
        "POST",
        f"{AUTHZ}/subjectaccessreviews",
        {"spec": {"user": "a", "resourceAttributes": {}, "nonResourceAttributes": {}}},
    )
    assert status == 422 and "exactly one of" in body["message"]
    status, _ = raw_request(kubesim, "GET", f"{AUTHZ}/subjectaccessreviews")
    assert status == 405


def test_local_and_self_subject_access_reviews(kubesim: RunningSim) -> None:
    _namespace(kubesim, "team")
    _role(kubesim, "reader", [OPERATIONS], namespace="team")
    _binding(kubesim, "r", "reader", [_user("alice")], namespace="team", role_kind="Role")
    attrs = {"verb": "get", "group": "meshplane.io", "resource": "operations"}
    answer = _post(
        kubesim,
        f"{AUTHZ}/namespaces/team/localsubjectaccessreviews",
        {"spec": {"user": "alice", "resourceAttributes": attrs}},
    )
    assert answer["status"]["allowed"] is True
    assert answer["spec"]["resourceAttributes"]["namespace"] == "team"
    status, _ = raw_request(
        kubesim,
        "POST",
        f"{AUTHZ}/namespaces/team/localsubjectaccessreviews",
        {"spec": {"user": "alice", "resourceAttributes": {**attrs, "namespace": "other"}}},
    )
    assert status == 422
    # the kubeconfig's own token is kubesim's administrator; no token is anonymous
    spec = {"resourceAttributes": {**attrs, "namespace": "team"}}
    ssar = f"{AUTHZ}/selfsubjectaccessreviews"
    status, answer = raw_request(
        kubesim, "POST", ssar, {"spec": spec}, headers={"Authorization": "Bearer kubesim-token"}
    )
    assert answer["status"]["allowed"] is True
    _, answer = raw_request(kubesim, "POST", ssar, {"spec": spec})
    assert answer["status"]["allowed"] is False


def test_kubectl_auth_can_i_follows_role_bindings(tls_kubesim: RunningSim, tmp_path: Path) -> None:
    base = [kubectl_binary(), f"--kubeconfig={tls_kubesim.kubeconfig}", f"--cache-dir={tmp_path}"]

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    assert kubectl("create", "serviceaccount", "ci").returncode == 0
    # kubectl resolves `operations.meshplane.io` through discovery
    operations = crd("operations", "meshplane.io", "Operation")
    assert kubectl("create", "-f", "-", stdin=json.dumps(operations)).returncode == 0
    token = kubectl("create", "token", "ci").stdout.strip()
    can_i = ["--token", token, "auth", "can-i", "list", "operations.meshplane.io", "-n", "default"]
    assert kubectl(*can_i).stdout.strip() == "no"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "reader", "namespace": "default"},
                "rules": [OPERATIONS],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": "default"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "default"}],
            },
        ],
    }
    applied = kubectl("apply", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
    assert applied.returncode == 0, applied.stderr
    assert kubectl(*can_i).stdout.strip() == "yes"
    assert kubectl(*can_i[:-2], "-n", "kube-system").stdout.strip() == "no"
