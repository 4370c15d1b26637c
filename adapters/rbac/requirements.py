"""What an adapter needs (`Requirements`: each permission with a reason) as merged PolicyRules."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.rbac.permissions import (
    Permission,
    UrlPermission,
    covers,
    expand_rule,
    url_covers,
)

__all__ = ["Requirements", "unused_permissions"]

_Grant = tuple[str, tuple[str, ...], tuple[str, ...]]
"""(API group, verbs, resources) that one or more PolicyRules grant."""


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """Everything an adapter needs, each permission with one reason it is needed."""

    mesh: str
    permissions: Mapping[Permission, str]
    urls: Mapping[UrlPermission, str] = field(default_factory=dict)
    versions: tuple[str, ...] = ()
    """Mesh versions whose charts were rendered."""

    def minimal(self) -> tuple[set[Permission], set[UrlPermission]]:
        """The permissions without those another (wildcard) permission already grants."""
        every = set(self.permissions)
        kept = {
            p for p in every if not any(o != p and covers(o, p) and not covers(p, o) for o in every)
        }
        urls = set(self.urls)
        kept_urls = {
            u
            for u in urls
            if not any(o != u and url_covers(o, u) and not url_covers(u, o) for o in urls)
        }
        return kept, kept_urls

    def rules(self) -> list[dict[str, Any]]:
        """The PolicyRules granting exactly `minimal`, merged and in a stable order."""
        permissions, urls = self.minimal()
        return _resource_rules(permissions) + _url_rules(urls)


def _names_by_grant(permissions: Iterable[Permission]) -> dict[_Grant, list[str]]:
    """The object names (``""``: every object) each (group, verbs, resources) is granted on:
    a resource's verbs are merged, then resources with the same verbs."""
    verbs_of: dict[tuple[str, str, str], set[str]] = {}
    for p in permissions:
        verbs_of.setdefault((p.group, p.resource, p.name), set()).add(p.verb)
    resources_of: dict[tuple[str, tuple[str, ...], str], list[str]] = {}
    for (group, resource, name), verb_set in verbs_of.items():
        resources_of.setdefault((group, tuple(sorted(verb_set)), name), []).append(resource)
    # Named grants with the same resources and verbs share one rule (its resourceNames).
    names_of: dict[_Grant, list[str]] = {}
    for (group, verbs, name), resources in resources_of.items():
        names_of.setdefault((group, verbs, tuple(sorted(resources))), []).append(name)
    return names_of


def _resource_rules(permissions: Iterable[Permission]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for (group, verbs, plurals), names in sorted(_names_by_grant(permissions).items()):
        rule: dict[str, Any] = {
            "apiGroups": [group],
            "resources": list(plurals),
            "verbs": list(verbs),
        }
        if "" in names:
            rules.append(rule)
        named = sorted(n for n in names if n)
        if named:
            rules.append({**rule, "resourceNames": named})
    return rules


def _url_rules(urls: Iterable[UrlPermission]) -> list[dict[str, Any]]:
    url_verbs: dict[str, set[str]] = {}
    for u in urls:
        url_verbs.setdefault(u.url, set()).add(u.verb)
    by_verbs: dict[tuple[str, ...], list[str]] = {}
    for url, verb_set in url_verbs.items():
        by_verbs.setdefault(tuple(sorted(verb_set)), []).append(url)
    return [
        {"nonResourceURLs": sorted(found), "verbs": list(verbs)}
        for verbs, found in sorted(by_verbs.items())
    ]


def unused_permissions(
    rules: Sequence[Mapping[str, Any]], needed: Requirements
) -> list[Permission | UrlPermission]:
    """Permissions ``rules`` grant that nothing in ``needed`` asks for (should be empty)."""
    wanted, wanted_urls = needed.minimal()
    unused: list[Permission | UrlPermission] = []
    for rule in rules:
        permissions, urls = expand_rule(rule)
        unused.extend(sorted(p for p in permissions if p not in wanted))
        unused.extend(sorted(u for u in urls if u not in wanted_urls))
    return unused
