"""Discovery documents: /version, /api, /api/v1, /apis, /apis/G and /apis/G/V."""

from __future__ import annotations

from typing import Any

from kubesim.errors import ApiError
from kubesim.resources import ResourceRegistry

KUBE_VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0-kubesim"}


def version() -> dict[str, Any]:
    return {
        **KUBE_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions() -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(name, versions) for name, versions in registry.groups()],
    }


def api_group(registry: ResourceRegistry, name: str) -> dict[str, Any]:
    for group, versions in registry.groups():
        if group == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}
    raise ApiError.not_found_path()


def resource_list(registry: ResourceRegistry, group: str, version: str) -> dict[str, Any]:
    if group and not registry.has_group_version(group, version):
        raise ApiError.not_found_path()
    if not group and version != "v1":
        raise ApiError.not_found_path()
    resources: list[dict[str, object]] = []
    for rt in sorted(registry.in_group_version(group, version), key=lambda t: t.plural):
        resources.extend(rt.discovery_entries())
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }
