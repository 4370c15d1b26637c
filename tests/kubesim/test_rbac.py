"""SubjectAccessReview and friends over HTTP, decided by RBAC over the stored Roles,
ClusterRoles (aggregated ones too) and their bindings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, TypedDict, Unpack

from tests.kubesim.servers import ApiServer
from tests.kubesim.support import crd, create_crd, eventually, raw_request, run_kubectl

AUTHZ = "/apis/authorization.k8s.io/v1"
RBAC = "/apis/rbac.authorization.k8s.io/v1"
SA_GROUPS = ("system:serviceaccounts", "system:authenticated")


def _post(sim: ApiServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = raw_request(sim, "POST", path, body)
    assert status == 201, answer
    result: dict[str, Any] = answer
    return result


def _put(sim: ApiServer, path: str, body: dict[str, Any]) -> None:
    status, answer = raw_request(sim, "PUT", path, body)
    assert status == 200, answer


def _namespace(sim: ApiServer, name: str) -> None:
    _post(sim, "/api/v1/namespaces", {"metadata": {"name": name}})


def _role(sim: ApiServer, name: str, rules: list[dict[str, Any]], namespace: str = "") -> None:
    """A Role, or (no namespace) a ClusterRole named `sim.unique(name)`."""
    if namespace:
        _post(
            sim,
            f"{RBAC}/namespaces/{namespace}/roles",
            {"metadata": {"name": name}, "rules": rules},
        )
    else:
        _post(sim, f"{RBAC}/clusterroles", {"metadata": {"name": sim.unique(name)}, "rules": rules})


def _binding(
    sim: ApiServer,
    name: str,
    role: str,
    subjects: list[dict[str, Any]],
    *,
    namespace: str = "",
    role_kind: str = "ClusterRole",
) -> dict[str, Any]:
    """A RoleBinding, or (no namespace) a ClusterRoleBinding; cluster-scoped names (the
    ClusterRoleBinding's, a ClusterRole's) are this test's own (`sim.unique`)."""
    if role_kind == "ClusterRole":
        role = sim.unique(role)
    body = {
        "metadata": {"name": name if namespace else sim.unique(name)},
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


class _Attributes(TypedDict, total=False):
    """What a SubjectAccessReview asks about: a resource (the default) or a `path`."""

    groups: tuple[str, ...]
    verb: str
    resource: str
    group: str
    namespace: str
    subresource: str
    name: str
    path: str


def review(sim: ApiServer, user: str = "", **ask: Unpack[_Attributes]) -> dict[str, Any]:
    """One SubjectAccessReview; its status."""
    spec: dict[str, Any] = {"user": user, "groups": list(ask.get("groups", ()))}
    verb = ask.get("verb", "get")
    if path := ask.get("path", ""):
        spec["nonResourceAttributes"] = {"path": path, "verb": verb}
    else:
        spec["resourceAttributes"] = {
            "verb": verb,
            "group": ask.get("group", ""),
            "resource": ask.get("resource", "pods"),
            "namespace": ask.get("namespace", ""),
            "subresource": ask.get("subresource", ""),
            "name": ask.get("name", ""),
        }
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}
    answer = _post(sim, f"{AUTHZ}/subjectaccessreviews", body)
    # echoed as decoded: empty fields left out
    assert answer["spec"] == _without_empty(spec)
    status: dict[str, Any] = answer["status"]
    return status


def _without_empty(value: Any) -> Any:
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", [], {})}
    return value


def allowed(sim: ApiServer, user: str = "", **kwargs: Any) -> bool:
    return bool(review(sim, user, **kwargs)["allowed"])


OPERATIONS = {"apiGroups": ["meshplane.io"], "resources": ["operations"], "verbs": ["get", "list"]}


def test_editing_a_role_binding_changes_the_decision(server: ApiServer) -> None:
    team, other = server.unique("team"), server.unique("other")
    _namespace(server, team)
    _role(server, "reader", [OPERATIONS], namespace=team)
    ask = {"group": "meshplane.io", "resource": "operations", "namespace": team}
    assert review(server, "alice", **ask) == {"allowed": False}

    binding = _binding(
        server, "readers", "reader", [_user("alice")], namespace=team, role_kind="Role"
    )
    assert review(server, "alice", **ask) == {
        "allowed": True,
        "reason": f'RBAC: allowed by RoleBinding "readers/{team}" of Role "reader" to User "alice"',
    }
    # the binding grants only in its namespace, only the role's verbs, only to its subjects
    assert not allowed(server, "alice", **{**ask, "namespace": other})
    assert not allowed(server, "alice", **{**ask, "namespace": ""})
    assert not allowed(server, "alice", **{**ask, "verb": "delete"})
    assert not allowed(server, "alice", **{**ask, "group": ""})
    assert not allowed(server, "bob", **ask)

    binding["subjects"] = [_user("bob")]
    _put(server, f"{RBAC}/namespaces/{team}/rolebindings/readers", binding)
    assert not allowed(server, "alice", **ask)
    assert allowed(server, "bob", **ask)

    raw_request(server, "DELETE", f"{RBAC}/namespaces/{team}/rolebindings/readers")
    assert not allowed(server, "bob", **ask)

    # a ClusterRole bound cluster-wide grants in every namespace and cluster-wide requests
    _role(server, "ops-reader", [OPERATIONS])
    _binding(server, "ops", "ops-reader", [_group("meshplane:viewers")])
    for namespace in (team, other, ""):
        assert allowed(
            server, "carol", groups=("meshplane:viewers",), **{**ask, "namespace": namespace}
        )
    # a binding to a role that does not exist grants nothing
    _binding(server, "dangling", "no-such-role", [_user("dave")])
    assert not allowed(server, "dave", **ask)


def test_rule_matching(server: ApiServer) -> None:
    team = server.unique("team")
    _role(
        server,
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
    _binding(server, "mixed", "mixed", [_user("u")])
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
        assert allowed(server, "u", **ask) is expected, ask

    # non-resource rules count only through ClusterRoleBindings
    _namespace(server, team)
    _binding(server, "urls", "mixed", [_user("v")], namespace=team)
    assert allowed(server, "v", resource="pods", subresource="log", namespace=team)
    assert not allowed(server, "v", path="/healthz")


def viewer_rules(server: ApiServer) -> Any:
    """The rules the aggregation controller has written into the aggregated `viewer` role."""
    _, role = raw_request(server, "GET", f"{RBAC}/clusterroles/{server.unique('viewer')}")
    return role.get("rules")


def assert_selected_role_grants(server: ApiServer, label: str, ask: dict[str, Any]) -> None:
    """A role labelled for the aggregated `viewer` grants its rules through viewer's binding."""
    _post(
        server,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": server.unique("ops-part"), "labels": {label: "true"}},
            "rules": [OPERATIONS],
        },
    )

    # (decided once the aggregation controller has written the rules: the real server's
    # authorizer reads the aggregated role's `rules`; kubesim's counts the selection at once)
    def granted() -> Any:
        answer = review(server, "x", **ask)
        return answer if answer["allowed"] else None

    assert eventually(granted) == {
        "allowed": True,
        "reason": f'RBAC: allowed by ClusterRoleBinding "viewers-{server.suffix}" of ClusterRole '
        f'"viewer-{server.suffix}" to '
        'Group "viewers"',
    }
    # the aggregation controller writes the selected rules into the aggregated role
    assert eventually(lambda: viewer_rules(server)) == [OPERATIONS]


def assert_aggregation_nests(server: ApiServer, label: str, ask: dict[str, Any]) -> dict[str, Any]:
    """An aggregated role selected by another brings its own selection; the rule it adds."""
    editor_label = f"meshplane.io/aggregate-to-editor-{server.suffix}"
    _post(
        server,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": server.unique("editor-part"), "labels": {label: "true"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {editor_label: "true"}}]},
        },
    )
    events = {"apiGroups": ["meshplane.io"], "resources": ["events"], "verbs": ["list"]}
    _post(
        server,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": server.unique("events"), "labels": {editor_label: "true"}},
            "rules": [events],
        },
    )
    assert eventually(lambda: allowed(server, "x", **{**ask, "resource": "events", "verb": "list"}))
    # in the order of the selected roles' names (editor-part-…, ops-part-…)
    assert eventually(
        lambda: (viewer_rules(server) or []) == [events, OPERATIONS] and viewer_rules(server)
    )
    return events


def assert_dropping_the_label_takes_rules_away(
    server: ApiServer, label: str, ask: dict[str, Any], kept: dict[str, Any]
) -> None:
    status, _ = raw_request(
        server,
        "PATCH",
        f"{RBAC}/clusterroles/{server.unique('ops-part')}",
        {"metadata": {"labels": {label: None}}},
        content_type="application/merge-patch+json",
    )
    assert status == 200
    assert eventually(lambda: not allowed(server, "x", **ask))
    assert eventually(lambda: viewer_rules(server) == [kept])


def test_aggregated_cluster_roles(server: ApiServer) -> None:
    label = f"meshplane.io/aggregate-to-viewer-{server.suffix}"
    _post(
        server,
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": server.unique("viewer")},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]},
        },
    )
    _binding(server, "viewers", "viewer", [_group("viewers")])
    ask = {"groups": ("viewers",), "group": "meshplane.io", "resource": "operations"}
    assert not allowed(server, "x", **ask)
    assert_selected_role_grants(server, label, ask)
    events = assert_aggregation_nests(server, label, ask)
    assert_dropping_the_label_takes_rules_away(server, label, ask, events)


def test_service_account_subjects_and_groups(server: ApiServer) -> None:
    team, other = server.unique("team"), server.unique("other")
    for namespace in (team, other):
        _namespace(server, namespace)
        _post(
            server, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "ci"}}
        )
    _role(server, "reader", [OPERATIONS])
    ask = {"group": "meshplane.io", "resource": "operations", "namespace": team}

    def sa(namespace: str) -> dict[str, Any]:
        # the groups the apiserver's TokenReview gives a ServiceAccount token
        status, body = raw_request(
            server, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/ci/token", {}
        )
        assert status == 201, body
        _, reviewed = raw_request(
            server,
            "POST",
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"spec": {"token": body["status"]["token"]}},
        )
        user: dict[str, Any] = reviewed["status"]["user"]
        return {"user": user["username"], "groups": tuple(user["groups"])}

    team_sa, other_sa = sa(team), sa(other)
    assert team_sa["groups"] == (
        "system:serviceaccounts",
        f"system:serviceaccounts:{team}",
        "system:authenticated",
    )
    assert not allowed(server, **team_sa, **ask)

    # a ServiceAccount subject without a namespace means the binding's own
    _binding(server, "ci", "reader", [{"kind": "ServiceAccount", "name": "ci"}], namespace=team)
    assert allowed(server, **team_sa, **ask)
    assert not allowed(server, **other_sa, **{**ask, "namespace": team})
    raw_request(server, "DELETE", f"{RBAC}/namespaces/{team}/rolebindings/ci")

    # every ServiceAccount of a namespace
    _binding(server, "team-sas", "reader", [_group(f"system:serviceaccounts:{team}")])
    assert allowed(server, **team_sa, **ask)
    assert not allowed(server, **other_sa, **ask)
    # every ServiceAccount anywhere, and every authenticated user
    _binding(server, "all-sas", "reader", [_group("system:serviceaccounts")])
    assert allowed(server, **other_sa, **ask)
    assert not allowed(server, "alice", groups=("system:authenticated",), **ask)
    _binding(server, "everyone", "reader", [_group("system:authenticated")])
    assert allowed(server, "alice", groups=("system:authenticated",), **ask)
    # a ServiceAccount subject in a ClusterRoleBinding names its namespace
    _binding(
        server,
        "ci-other",
        "reader",
        [{"kind": "ServiceAccount", "name": "ci", "namespace": other}],
    )
    assert review(server, other_sa["user"], **ask)["reason"].endswith(
        f'ServiceAccount "ci/{other}"'
    )


def test_masters_and_refused_reviews(server: ApiServer) -> None:
    assert allowed(server, "root", groups=("system:masters",), verb="delete", resource="nodes")
    status, body = raw_request(
        server,
        "POST",
        f"{AUTHZ}/subjectaccessreviews",
        {"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}},
    )
    assert status == 422 and "at least one of user or group" in body["message"]
    status, body = raw_request(
        server,
        "POST",
        f"{AUTHZ}/subjectaccessreviews",
        {"spec": {"user": "a", "resourceAttributes": {}, "nonResourceAttributes": {}}},
    )
    assert status == 422 and "exactly one of" in body["message"]
    status, _ = raw_request(server, "GET", f"{AUTHZ}/subjectaccessreviews")
    assert status == 405


def test_local_and_self_subject_access_reviews(server: ApiServer) -> None:
    team, other = server.unique("team"), server.unique("other")
    _namespace(server, team)
    _role(server, "reader", [OPERATIONS], namespace=team)
    _binding(server, "r", "reader", [_user("alice")], namespace=team, role_kind="Role")
    attrs = {"verb": "get", "group": "meshplane.io", "resource": "operations"}
    local = f"{AUTHZ}/namespaces/{team}/localsubjectaccessreviews"
    answer = _post(
        server,
        local,
        {"spec": {"user": "alice", "resourceAttributes": {**attrs, "namespace": team}}},
    )
    assert answer["status"]["allowed"] is True
    assert answer["metadata"]["namespace"] == team
    # the namespace must be named, and be the path's
    for namespace in (other, None):
        asked = {**attrs, "namespace": namespace} if namespace else attrs
        status, body = raw_request(
            server, "POST", local, {"spec": {"user": "alice", "resourceAttributes": asked}}
        )
        assert status == 422
        assert body["details"]["causes"][0]["message"] == (
            f'Invalid value: "{namespace or ""}": must match metadata.namespace'
        )
    # the admin (kubesim's kubeconfig token; the real one's client certificate) may; no
    # credentials at all is anonymous
    spec = {"resourceAttributes": {**attrs, "namespace": team}}
    ssar = f"{AUTHZ}/selfsubjectaccessreviews"
    status, answer = raw_request(server, "POST", ssar, {"spec": spec}, headers=server.admin_headers)
    assert answer["status"]["allowed"] is True
    status, answer = raw_request(server, "POST", ssar, {"spec": spec}, anonymous=True)
    if server.real:  # the real server authorizes its own API: anonymous may not even ask
        assert (status, answer["reason"]) == (403, "Forbidden")
    else:  # kubesim authorizes nothing of its own API (docs/kubesim.md)
        assert answer["status"]["allowed"] is False


def test_kubectl_auth_can_i_follows_role_bindings(tls_server: ApiServer, tmp_path: Path) -> None:
    ns, group = tls_server.namespace, tls_server.group
    admin = [f"--kubeconfig={tls_server.kubeconfig}", "-n", ns]

    def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_kubectl(*args, cache=tmp_path, stdin=stdin)

    assert kubectl(*admin, "create", "serviceaccount", "ci").returncode == 0
    # kubectl resolves `operations.GROUP` through discovery
    create_crd(tls_server, crd("operations", group, "Operation"))
    token = kubectl(*admin, "create", "token", "ci").stdout.strip()
    as_ci = tls_server.token_args(token, tmp_path)
    can_i = [*as_ci, "auth", "can-i", "list", f"operations.{group}", "-n", ns]
    assert kubectl(*can_i).stdout.strip() == "no"
    manifest = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "reader", "namespace": ns},
                "rules": [{**OPERATIONS, "apiGroups": [group]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": ns},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "reader",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": ns}],
            },
        ],
    }
    applied = kubectl(*admin, "apply", "--validate=false", "-f", "-", stdin=json.dumps(manifest))
    assert applied.returncode == 0, applied.stderr
    assert kubectl(*can_i).stdout.strip() == "yes"
    assert kubectl(*can_i[:-2], "-n", "kube-system").stdout.strip() == "no"
