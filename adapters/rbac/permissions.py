"""Single RBAC permissions, and RBAC's rule matching over them (wildcards, subresources, names)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "RBAC_GROUP",
    "Permission",
    "UrlPermission",
    "covers",
    "expand_rule",
    "rules_cover",
    "url_covers",
]

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True, kw_only=True, order=True)
class Permission:
    """One verb on one resource of one API group; ``name`` limits it to one object."""

    group: str
    resource: str
    verb: str
    name: str = ""


@dataclass(frozen=True, kw_only=True, order=True)
class UrlPermission:
    """One verb on one non-resource URL (ClusterRoles only, e.g. ``/metrics``)."""

    url: str
    verb: str


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def expand_rule(rule: Mapping[str, Any]) -> tuple[set[Permission], set[UrlPermission]]:
    """A PolicyRule as the single permissions it grants (wildcards stay ``*``)."""
    verbs = _strings(rule.get("verbs"))
    urls = _strings(rule.get("nonResourceURLs"))
    url_permissions = {UrlPermission(url=url, verb=verb) for url in urls for verb in verbs}
    names = _strings(rule.get("resourceNames")) or [""]
    permissions = {
        Permission(group=group, resource=resource, verb=verb, name=name)
        for group in _strings(rule.get("apiGroups"))
        for resource in _strings(rule.get("resources"))
        for verb in verbs
        for name in names
    }
    return permissions, url_permissions


def _matches(granted: str, wanted: str) -> bool:
    return granted in ("*", wanted)


def _resource_matches(granted: str, wanted: str) -> bool:
    if granted in ("*", wanted):
        return True
    # "*/scale" grants the scale subresource of every resource; "pods/*" every pods subresource.
    g_base, _, g_sub = granted.partition("/")
    w_base, _, w_sub = wanted.partition("/")
    if not g_sub or not w_sub:
        return False
    return (g_base in ("*", w_base)) and (g_sub in ("*", w_sub))


def covers(granted: Permission, wanted: Permission) -> bool:
    """Whether ``granted`` allows everything ``wanted`` asks for (RBAC's rule matching)."""
    return (
        _matches(granted.group, wanted.group)
        and _resource_matches(granted.resource, wanted.resource)
        and _matches(granted.verb, wanted.verb)
        and granted.name in ("", wanted.name)
    )


def url_covers(granted: UrlPermission, wanted: UrlPermission) -> bool:
    """Whether ``granted`` allows ``wanted`` (a trailing ``*`` matches any URL it prefixes)."""
    if not _matches(granted.verb, wanted.verb):
        return False
    if granted.url.endswith("*"):
        return wanted.url.startswith(granted.url[:-1])
    return granted.url == wanted.url


def rules_cover(rules: Sequence[Mapping[str, Any]], wanted: Permission | UrlPermission) -> bool:
    """Whether any of ``rules`` grants ``wanted``."""
    for rule in rules:
        permissions, urls = expand_rule(rule)
        if isinstance(wanted, Permission):
            if any(covers(granted, wanted) for granted in permissions):
                return True
        elif any(url_covers(granted, wanted) for granted in urls):
            return True
    return False
