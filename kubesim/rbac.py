"""RBAC evaluation over the stored Roles, ClusterRoles and their bindings.

As the apiserver's RBAC authorizer: ClusterRoleBindings are visited first, then the
RoleBindings of the request's namespace; a binding applies when one of its subjects is the
user (`User`), one of its groups (`Group`) or, for `ServiceAccount` subjects, the user
`system:serviceaccount:NS:NAME` (NS defaulting to the binding's namespace). Rules match on
verbs, API groups, resources (`resource/subresource`, `*`, `*/subresource`), resourceNames
and, for requests outside the resource API, nonResourceURLs (exact, `*`, or a `prefix*`).
A ClusterRole with an `aggregationRule` holds the rules of every ClusterRole its label
selectors pick (recursively), as the aggregation controller keeps them. RBAC only allows:
a request no rule allows is not allowed, with no reason. Members of `system:masters` are
allowed everything, as by the apiserver's privileged-group authorizer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kubesim.objects import Obj
from kubesim.selectors import labels_match, requirements_from_label_selector
from kubesim.store import Store
from kubesim.tokens import MASTERS, SA_PREFIX

RBAC_GROUP = "rbac.authorization.k8s.io"
ROLES = (RBAC_GROUP, "roles")
CLUSTER_ROLES = (RBAC_GROUP, "clusterroles")
ROLE_BINDINGS = (RBAC_GROUP, "rolebindings")
CLUSTER_ROLE_BINDINGS = (RBAC_GROUP, "clusterrolebindings")
ALL = "*"


@dataclass(frozen=True, kw_only=True)
class Attributes:
    """What a request asks: a resource request (`resource` set) or a non-resource one (`path`)."""

    user: str
    groups: tuple[str, ...] = ()
    verb: str
    namespace: str = ""
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


@dataclass(frozen=True, kw_only=True)
class Decision:
    allowed: bool
    reason: str = ""


def _has(values: Iterable[str], wanted: str) -> bool:
    return any(v in (ALL, wanted) for v in values)


def _resource_matches(rule_resources: list[str], resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for ruled in rule_resources:
        if ruled in (ALL, combined):
            return True
        if subresource and ruled == f"*/{subresource}":
            return True
    return False


def _url_matches(rule_urls: list[str], path: str) -> bool:
    for url in rule_urls:
        if url in (ALL, path):
            return True
        if url.endswith("*") and path.startswith(url.rstrip("*")):
            return True
    return False


def rule_allows(rule: Any, attrs: Attributes) -> bool:
    if not isinstance(rule, dict) or not _has(rule.get("verbs") or [], attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs") or [], attrs.path)
    if not _has(rule.get("apiGroups") or [], attrs.api_group):
        return False
    if not _resource_matches(rule.get("resources") or [], attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def aggregated_rules(store: Store, role: Obj, seen: frozenset[str] = frozenset()) -> list[Any]:
    """The rules of a ClusterRole: for an aggregated one, those of the roles it selects."""
    rule = role.get("aggregationRule")
    if not isinstance(rule, dict):
        return list(role.get("rules") or [])
    name = role["metadata"]["name"]
    seen = seen | {name}
    selectors = [
        requirements_from_label_selector(s)
        for s in rule.get("clusterRoleSelectors") or []
        if isinstance(s, dict)
    ]
    rules: list[Any] = []
    # in the order of the selected roles' names, as the aggregation controller writes them
    for other in sorted(store.objects(CLUSTER_ROLES), key=lambda r: str(r["metadata"]["name"])):
        other_name = other["metadata"]["name"]
        if other_name in seen:
            continue
        labels = other["metadata"].get("labels") or {}
        if any(labels_match(reqs, labels) for reqs in selectors):
            for r in aggregated_rules(store, other, seen):
                if r not in rules:
                    rules.append(r)
    return rules


def _applies(subject: Any, attrs: Attributes, binding_namespace: str) -> bool:
    if not isinstance(subject, dict):
        return False
    kind, name = subject.get("kind"), subject.get("name", "")
    if kind == "User":
        return bool(name == attrs.user)
    if kind == "Group":
        return name in attrs.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and attrs.user == f"{SA_PREFIX}{namespace}:{name}"
    return False


def _describe(subject: dict[str, Any], binding_namespace: str) -> str:
    """As the apiserver's RBAC names a subject: a ServiceAccount as "NAME/NAMESPACE"."""
    if subject.get("kind") == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return f'ServiceAccount "{subject.get("name")}/{namespace}"'
    return f'{subject.get("kind")} "{subject.get("name")}"'


def _bindings(store: Store, namespace: str) -> Iterator[tuple[str, Obj, str]]:
    """(how the reason names the binding, binding, its namespace) in the authorizer's order."""
    for binding in sorted(store.objects(CLUSTER_ROLE_BINDINGS), key=_name):
        yield f'ClusterRoleBinding "{_name(binding)}"', binding, ""
    if namespace:
        for binding in sorted(store.objects(ROLE_BINDINGS, namespace), key=_name):
            yield f'RoleBinding "{_name(binding)}/{namespace}"', binding, namespace


def _name(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def _role(store: Store, ref: Any, namespace: str) -> tuple[str, Obj] | None:
    if not isinstance(ref, dict) or ref.get("apiGroup", RBAC_GROUP) != RBAC_GROUP:
        return None
    name = str(ref.get("name", ""))
    if ref.get("kind") == "ClusterRole":
        role = store.get(CLUSTER_ROLES, "", name)
        return (f'ClusterRole "{name}"', role) if role is not None else None
    if ref.get("kind") == "Role" and namespace:
        role = store.get(ROLES, namespace, name)
        return (f'Role "{name}"', role) if role is not None else None
    return None


def authorize(store: Store, attrs: Attributes) -> Decision:
    """Whether RBAC allows the request, and which binding, role and subject allowed it."""
    if MASTERS in attrs.groups:
        return Decision(allowed=True)
    namespace = attrs.namespace if attrs.resource_request else ""
    for described, binding, binding_namespace in _bindings(store, namespace):
        subjects = [
            s for s in binding.get("subjects") or [] if _applies(s, attrs, binding_namespace)
        ]
        if not subjects:
            continue
        found = _role(store, binding.get("roleRef"), binding_namespace)
        if found is None:
            continue
        role_described, role = found
        if any(rule_allows(rule, attrs) for rule in aggregated_rules(store, role)):
            return Decision(
                allowed=True,
                reason=f"RBAC: allowed by {described} of {role_described} to "
                f"{_describe(subjects[0], binding_namespace)}",
            )
    return Decision(allowed=False)
