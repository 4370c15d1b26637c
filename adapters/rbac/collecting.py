"""Collecting what an adapter touches: kinds with verbs and reasons, resolved to permissions.

Kind-level needs are kept until every CRD has been seen (a custom kind's resource name comes
from its CRD); rendered roles add their rules, bindings add ``bind`` on the role they name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from adapters.kit.model.objects import KubeObject
from adapters.rbac.permissions import RBAC_GROUP, Permission, UrlPermission, expand_rule
from adapters.rbac.requirements import Requirements
from adapters.rbac.resource_names import BUILTIN_RESOURCES

__all__ = [
    "EXPLAINED_BY_PODS",
    "FIELDS_VERBS",
    "HOOK_VERBS",
    "OWNED_VERBS",
    "NeedCollector",
    "RbacError",
    "group_of",
]

OWNED_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch")
"""Objects a release owns: applied (patch+create), listed by release label on upgrade, read
while waiting and for status, deleted on prune and uninstall."""
FIELDS_VERBS: tuple[str, ...] = ("create", "get", "patch")
"""Objects a fields-only release touches: read first, then applied (possibly creating)."""
HOOK_VERBS: tuple[str, ...] = ("create", "delete", "get", "patch")
"""Helm hooks: deleted before re-creation, applied, waited on, deleted by policy."""
EXPLAINED_BY_PODS: frozenset[str] = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
"""Kinds whose readiness wait lists their Pods to say why they are stuck."""


class RbacError(RuntimeError):
    """The needed permissions cannot be worked out (a kind with no known resource name)."""


def group_of(api_version: str) -> str:
    """The API group of ``group/version`` (``""`` for the core ``v1``)."""
    return api_version.rpartition("/")[0]


def _name_of(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


class NeedCollector:
    """Kind-level needs, resolved to resources once every CRD has been seen."""

    def __init__(self) -> None:
        self.kind_verbs: dict[tuple[str, str, str], str] = {}
        self.crds: dict[tuple[str, str], str] = {}
        self.permissions: dict[Permission, str] = {}
        self.urls: dict[UrlPermission, str] = {}
        self.rendered_roles: set[tuple[str, str]] = set()
        self.bindings: list[tuple[str, str, str]] = []

    def need(self, api_version: str, kind: str, verbs: Iterable[str], why: str) -> None:
        """``verbs`` on ``kind``, for ``why`` (the first reason given is kept)."""
        group = group_of(api_version)
        for verb in verbs:
            self.kind_verbs.setdefault((group, kind, verb), why)

    def grant(self, permission: Permission, why: str) -> None:
        """A permission needed as it is (a rendered role's rule, ``bind`` on a role)."""
        self.permissions.setdefault(permission, why)

    def objects(self, objects: Iterable[KubeObject], verbs: Sequence[str], why: str) -> None:
        """Objects an operation applies with ``verbs``, and what each implies."""
        for obj in objects:
            api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
            reason = f"{why}: {kind} {_name_of(obj)}"
            self.need(api_version, kind, verbs, reason)
            if kind in EXPLAINED_BY_PODS:
                self.need("v1", "Pod", ("list",), f"{reason} (why its pods are not ready)")
            if kind == "CustomResourceDefinition":
                self._crd_seen(obj, reason, counted="delete" in verbs)
            elif group_of(api_version) == RBAC_GROUP:
                self._rbac_object_seen(obj, kind, reason)

    def _crd_seen(self, crd: KubeObject, reason: str, *, counted: bool) -> None:
        """A CRD names its kind's resource; purging a release's CRDs first lists their custom
        resources in every namespace (``counted``: the CRD is deleted with its release)."""
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        kind = str(names.get("kind", ""))
        if not spec.get("group") or not kind:
            return
        group = str(spec["group"])
        if counted:
            self.kind_verbs.setdefault(
                (group, kind, "list"),
                f"{reason} (uninstall counts its custom resources before purging it)",
            )
        if names.get("plural"):
            self.crds[(group, kind)] = str(names["plural"])

    def _rbac_object_seen(self, obj: KubeObject, kind: str, reason: str) -> None:
        if kind in ("ClusterRole", "Role"):
            self._role_seen(obj, kind, reason)
        elif kind in ("ClusterRoleBinding", "RoleBinding"):
            ref = obj.get("roleRef") or {}
            self.bindings.append((str(ref.get("kind", "")), str(ref.get("name", "")), reason))

    def _role_seen(self, role: KubeObject, kind: str, reason: str) -> None:
        """A role's creator must hold what it grants; an aggregated one's rules are unknown."""
        self.rendered_roles.add((kind, _name_of(role)))
        held = f"{reason} grants it (a role's creator must hold what it grants)"
        rules: list[Any] = role.get("rules") or []
        for rule in rules:
            permissions, urls = expand_rule(rule)
            for permission in permissions:
                self.grant(permission, held)
            for url in urls:
                self.urls.setdefault(url, held)
        if role.get("aggregationRule"):
            self.grant(
                Permission(group=RBAC_GROUP, resource="clusterroles", verb="escalate"),
                f"{reason} is aggregated: its rules are not known in advance",
            )

    def finish(self, mesh: str, versions: Sequence[str]) -> Requirements:
        """Every need as permissions (raises `RbacError` for a kind with no resource name)."""
        self._grant_kinds()
        self._grant_binds()
        return Requirements(
            mesh=mesh,
            permissions=dict(self.permissions),
            urls=dict(self.urls),
            versions=tuple(versions),
        )

    def _grant_kinds(self) -> None:
        unknown: list[str] = []
        for (group, kind, verb), why in self.kind_verbs.items():
            plural = BUILTIN_RESOURCES.get((group, kind)) or self.crds.get((group, kind))
            if plural is None:
                unknown.append(f"{kind}.{group or 'core'} ({why})")
                continue
            self.grant(Permission(group=group, resource=plural, verb=verb), why)
        if unknown:
            raise RbacError(
                "no resource name known for "
                + "; ".join(sorted(set(unknown)))
                + ": add the built-in kind to BUILTIN_RESOURCES, or render its CRD"
            )

    def _grant_binds(self) -> None:
        for role_kind, role_name, why in self.bindings:
            resource = "clusterroles" if role_kind == "ClusterRole" else "roles"
            rendered = (role_kind, role_name) in self.rendered_roles
            self.grant(
                Permission(group=RBAC_GROUP, resource=resource, verb="bind", name=role_name),
                f"{why} binds {role_kind} {role_name}"
                + (
                    " (applied beside it: without bind the API server must read the role, "
                    "which may not exist yet)"
                    if rendered
                    else ", which the charts do not render"
                ),
            )
