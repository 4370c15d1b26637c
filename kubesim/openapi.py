"""A minimal OpenAPI v3 surface: enough for clients to learn which query parameters PATCH takes.

kubectl asks `/openapi/v3` and then one group-version document before it validates or applies;
when the PATCH operation of a kind lists `fieldValidation`, it leaves validation to the server.
Schemas are not published, so clients fall back to their built-in knowledge of types.
"""

from __future__ import annotations

import hashlib
from typing import Any

from kubesim.errors import ApiError
from kubesim.resources import ResourceRegistry, ResourceType

_PATCH_PARAMS = ("dryRun", "fieldManager", "fieldValidation", "force")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _group_versions(registry: ResourceRegistry) -> list[tuple[str, str]]:
    out = [("", "v1")]
    for group, versions in registry.groups():
        out.extend((group, v) for v in versions)
    return out


def root(registry: ResourceRegistry) -> dict[str, Any]:
    paths = {}
    for group, version in _group_versions(registry):
        gv = _gv_path(group, version)
        kinds = ",".join(sorted(t.plural for t in registry.in_group_version(group, version)))
        digest = hashlib.sha256(kinds.encode()).hexdigest()[:32].upper()
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


def _item_path(rt: ResourceType) -> str:
    prefix = "/" + _gv_path(rt.group, rt.version)
    scope = "/namespaces/{namespace}" if rt.namespaced else ""
    return f"{prefix}{scope}/{rt.plural}/{{name}}"


def group_version(registry: ResourceRegistry, parts: list[str]) -> dict[str, Any]:
    """The document of one group-version; `parts` is the URL path after `/openapi/v3`."""
    if len(parts) == 2 and parts[0] == "api":
        group, version = "", parts[1]
    elif len(parts) == 3 and parts[0] == "apis":
        group, version = parts[1], parts[2]
    else:
        raise ApiError.not_found_path()
    types = registry.in_group_version(group, version)
    if not types:
        raise ApiError.not_found_path()
    paths: dict[str, Any] = {}
    for rt in sorted(types, key=lambda t: t.plural):
        gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
        params = [
            {"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for p in _PATCH_PARAMS
        ]
        paths[_item_path(rt)] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "parameters": params,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            },
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-kubesim"},
        "paths": paths,
        "components": {"schemas": {}},
    }
