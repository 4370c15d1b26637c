"""Discovery documents: /version, /api, /api/v1, /apis, /apis/G and /apis/G/V.

`/api` and `/apis` also answer in aggregated form (apidiscovery.k8s.io v2) when the
client's Accept asks for it, as API servers do since 1.30 (beta since 1.26): one document with
every group, version and resource instead of one request per group-version. kubectl and
client-go ask for it first and fall back to the per-group-version documents.
"""

from __future__ import annotations

import re
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


AGGREGATED_VERSIONS = ("v2",)  # v2beta1 was removed in Kubernetes 1.33
_MEDIA_PARAMETER = re.compile(r";\s*([a-zA-Z]+)\s*=\s*([^;,\s]+)")


def aggregated_version(accept: str) -> str | None:
    """The apidiscovery version the Accept header asks for first, or None (legacy documents).

    Media ranges are taken in the order given, as the apiserver's negotiation does for equal
    quality: the first that names an aggregated list we serve wins; a plain JSON range before
    any aggregated one means the legacy form. A header naming only what is not served (say,
    the removed v2beta1) is refused with 406, as the apiserver does.
    """
    if not accept.strip():
        return None
    for media_range in accept.split(","):
        media_type = media_range.split(";", 1)[0].strip().lower()
        if media_type not in _LEGACY_MEDIA_TYPES:
            continue
        params = {k.lower(): v for k, v in _MEDIA_PARAMETER.findall(media_range)}
        if "as" not in params:
            return None
        if (
            media_type in ("application/json", "*/*", "application/*")
            and params["as"] == "APIGroupDiscoveryList"
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") in AGGREGATED_VERSIONS
        ):
            return str(params["v"])
    raise ApiError(
        406,
        "NotAcceptable",
        "only the following media types are accepted: application/json, application/yaml, "
        "application/vnd.kubernetes.protobuf",
    )


_LEGACY_MEDIA_TYPES = (
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "*/*",
    "application/*",
)


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"


def aggregated(registry: ResourceRegistry, *, core: bool, version: str) -> dict[str, Any]:
    """APIGroupDiscoveryList for `/api` (core) or `/apis` (every named group)."""
    groups = [("", ["v1"])] if core else registry.groups()
    items = []
    for name, versions in groups:
        items.append(
            {
                "metadata": {"name": name},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            rt.aggregated_entry()
                            for rt in sorted(
                                registry.in_group_version(name, v), key=lambda t: t.plural
                            )
                        ],
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": items,
    }
