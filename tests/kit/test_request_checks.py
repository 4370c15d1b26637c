"""request_checks: custom_body verdicts, each naming the field and the fix."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from adapters.kit.model.custom_bodies import CUSTOM_MAX_BYTES
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy, ObjectRefusal, Rule
from adapters.kit.run.admission import CustomBodyPolicy, FieldProblem, check_custom_body

POLICY = CustomBodyPolicy(namespace="books", namespace_sent=False, objects=ObjectPolicy())
SENT_NAMESPACE = CustomBodyPolicy(namespace="books", namespace_sent=True, objects=ObjectPolicy())
ALLOWED = CustomBodyPolicy(
    namespace="books",
    namespace_sent=True,
    objects=ObjectPolicy(),
    grant=PolicyGrant(elevated=True),
)
DELETE = CustomBodyPolicy(namespace="books", namespace_sent=False, objects=None)

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n"
CLUSTER_ROLE = (
    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n"
)


def billion_laughs(levels: int = 9) -> str:
    """Each level repeats the previous one ten times: 10**levels nodes once expanded."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "data:", "  l0: &l0 lol"]
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def body_problem(body: str, policy: CustomBodyPolicy = POLICY) -> str:
    problem = check_custom_body(body, policy)
    assert isinstance(problem, FieldProblem), (body, problem)
    assert problem.field == "custom_body"
    return problem.message


def refusal(body: str, policy: CustomBodyPolicy = POLICY) -> ObjectRefusal:
    found = check_custom_body(body, policy)
    assert isinstance(found, ObjectRefusal), (body, found)
    return found


def test_a_plain_namespaced_body_passes() -> None:
    two = CONFIG_MAP + "---\n" + CONFIG_MAP.replace("settings", "more")
    assert check_custom_body(two, POLICY) is None
    assert (
        check_custom_body(
            CONFIG_MAP.replace("{name: settings}", "{name: s, namespace: books}"), SENT_NAMESPACE
        )
        is None
    )


def test_a_yaml_bomb_is_refused_quickly() -> None:
    started = time.monotonic()
    message = body_problem(billion_laughs())
    assert time.monotonic() - started < 1.0
    assert "billion laughs" in message and "max_alias_expansions" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("a: [unclosed\n", "is not valid YAML"),
        ("- just\n- a list\n", "is a list, not a mapping"),
        ("kind: ConfigMap\nmetadata: {name: x}\n", "(kind ConfigMap) has no apiVersion"),
        ("apiVersion: v1\nmetadata: {name: x}\n", "has no kind"),
        ("apiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n", "object 1 (ConfigMap) has no metadata"),
        (
            CONFIG_MAP + "---\napiVersion: v1\nkind: Secret\nmetadata: {generateName: s-}\n",
            "object 2 (Secret) has no metadata.name",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: [a]}\n",
            "must be a string",
        ),
        ("---\n---\n", "holds no Kubernetes objects"),
        ("  \n", "is empty; put the YAML documents to apply in custom_body"),
        ("a: 1\na: 2\n", "duplicate key 'a'"),
        ("x" * (CUSTOM_MAX_BYTES + 1), "more than the limit of 1048576 bytes"),
        ("a:\n" + "".join("  " * d + "- \n" for d in range(1, 200)), "nesting deeper than"),
    ],
)
def test_unusable_bodies_say_what_is_wrong(body: str, fragment: str) -> None:
    assert fragment in body_problem(body)


def test_cluster_scoped_objects_need_the_operator_switch() -> None:
    body = CONFIG_MAP + "---\n" + CLUSTER_ROLE
    refused = refusal(body)
    assert refused.rule is Rule.CLUSTER_RBAC
    assert refused.message.startswith("ClusterRole reader: ")
    assert "--allow-elevated-objects" in refused.message
    assert "allow_cluster_scoped" not in refused.message
    assert check_custom_body(body, ALLOWED) is None


def test_a_delete_is_not_judged_by_kind() -> None:
    # A delete removes only what the release's inventory holds: the YAML only names the release.
    assert check_custom_body(CLUSTER_ROLE, DELETE) is None


def test_cluster_scoped_objects_inside_a_list_are_found() -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [yaml.safe_load(CONFIG_MAP), yaml.safe_load(CLUSTER_ROLE)],
    }
    assert refusal(yaml.safe_dump(listed)).subject == "ClusterRole reader"


def _crd(scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }


WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}


def test_resources_of_a_cluster_scoped_crd_in_the_same_body_are_cluster_scoped() -> None:
    refused = refusal(yaml.safe_dump_all([_crd("Cluster"), WIDGET]))
    assert refused.subject == "CustomResourceDefinition widgets.example.com"
    assert refused.rule is Rule.CUSTOM_RESOURCE_DEFINITION
    assert refused.others == 1  # the Widget
    only_widget = refusal(yaml.safe_dump_all([WIDGET, _crd("Cluster")]))
    assert only_widget.subject == "Widget w" and only_widget.rule is Rule.CLUSTER_SCOPED
    namespaced = refusal(yaml.safe_dump_all([_crd("Namespaced"), WIDGET]))
    assert namespaced.others == 0  # only the CRD itself needs the switch
    # A kind the request alone cannot place is left to the plan-time judgement (discovery).
    assert check_custom_body(yaml.safe_dump(WIDGET), POLICY) is None


def test_many_refused_objects_are_counted() -> None:
    body = "---\n".join(CLUSTER_ROLE.replace("reader", f"r{n}") for n in range(8))
    refused = refusal(body)
    assert refused.subject == "ClusterRole r0"
    assert "(7 more objects refused)" in refused.message


@pytest.mark.parametrize(
    "body",
    [
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: b}\n"
        "roleRef: cluster-admin\nsubjects: 5\n",
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r}\n"
        "rules: [{verbs: 5, resources: {a: b}}, 7]\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  volumes: 7\n"
        "  containers: [{name: c, securityContext: {capabilities: x}, ports: 3}, 9]\n",
    ],
)
def test_hostile_shapes_are_judged_without_raising(body: str) -> None:
    found = check_custom_body(body, POLICY)
    assert found is None or isinstance(found, ObjectRefusal)


def test_privileged_pod_templates_are_found_at_any_depth() -> None:
    pod = {"containers": [{"name": "c", "securityContext": {"privileged": True}}]}
    nested: dict[str, Any] = {"template": {"spec": pod}}
    for level in range(40):
        nested = {f"level{level}": nested}
    widget = {**WIDGET, "spec": nested}
    refused = refusal(yaml.safe_dump(widget))
    assert refused.reason == "its pod template's container c is privileged"
    assert check_custom_body(yaml.safe_dump(widget), ALLOWED) is None


def test_a_namespace_that_contradicts_the_requests_is_refused() -> None:
    body = CONFIG_MAP.replace("{name: settings}", "{name: settings, namespace: elsewhere}")
    message = body_problem(body, SENT_NAMESPACE)
    assert "ConfigMap elsewhere/settings" in message
    assert "'elsewhere'" in message and "'books'" in message
    # Like kubectl without -n: a request that names no namespace lets objects keep theirs.
    assert check_custom_body(body, POLICY) is None


def test_cluster_scoped_objects_are_not_held_to_the_requests_namespace() -> None:
    body = CLUSTER_ROLE.replace("{name: reader}", "{name: reader, namespace: elsewhere}")
    assert check_custom_body(body, ALLOWED) is None
