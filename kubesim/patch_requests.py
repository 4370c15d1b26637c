"""A PATCH request's body: the object a patch makes of the live one, and the checked
configuration of a server-side apply."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import yaml

from kubesim.admission import check_body, check_namespace_matches, prune
from kubesim.errors import ApiError
from kubesim.objects import Obj, drop_nulls
from kubesim.patching import (
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from kubesim.resources import ResourceType
from kubesim.write_options import WriteOptions


def check_patch_options(opts: WriteOptions) -> None:
    """`force` belongs to server-side apply only."""
    if opts.force:
        raise ApiError.invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            [
                (
                    "FieldValueForbidden",
                    "force",
                    "Forbidden: may not be specified for non-apply patch",
                )
            ],
        )


def patched(rt: ResourceType, old: Obj, content_type: str, raw: bytes) -> Obj:
    """`old` with the JSON, merge or strategic merge patch `raw` applied (not yet stored)."""
    try:
        patch = json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError.bad_request(f"error decoding patch: {exc}") from exc
    if content_type == JSON_PATCH:
        result = apply_json_patch(old, patch)
    elif content_type == MERGE_PATCH:
        if not isinstance(patch, dict):
            raise ApiError.bad_request("merge patch must be a JSON object")
        result = apply_merge_patch(old, patch)
    elif content_type == STRATEGIC_MERGE_PATCH:
        if rt.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types "
                "include: application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml",
            )
        result = apply_strategic_merge_patch(old, patch, rt.kind)
    else:
        raise ApiError.unsupported_media_type(
            "application/json-patch+json, application/merge-patch+json, "
            "application/apply-patch+yaml, application/strategic-merge-patch+json"
        )
    if not isinstance(result, dict):
        raise ApiError.bad_request("the patch did not produce an object")
    return result


def apply_configuration(
    rt: ResourceType, namespace: str, name: str, raw: bytes, opts: WriteOptions, *, subresource: str
) -> Obj:
    """The configuration of a server-side apply to `name`, checked and pruned to the schema
    (its status only, for an apply to the status subresource)."""
    if not opts.manager:
        raise ApiError.invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            [
                (
                    "FieldValueRequired",
                    "fieldManager",
                    "Required value: is required for apply patch",
                )
            ],
        )
    config = _parse_apply(raw)
    if config.get("apiVersion") != rt.api_version or config.get("kind") != rt.kind:
        if not config.get("apiVersion") or not config.get("kind"):
            group, _, version = str(config.get("apiVersion") or "").rpartition("/")
            raise ApiError.bad_request(
                f"invalid object type: {group}/{version}, Kind={config.get('kind') or ''}"
            )
        check_body(rt, config, namespace)
    md = config.get("metadata") or {}
    if md.get("managedFields") is not None:
        # As the real server: an applied configuration never carries field ownership (an
        # object read back from the server must lose it before it is applied again).
        raise ApiError.bad_request("metadata.managedFields must be nil")
    if md.get("name", name) != name:
        raise ApiError.bad_request(
            f"the name of the object ({md.get('name')}) does not match the name on the URL ({name})"
        )
    check_namespace_matches(rt, md.get("namespace"), namespace)
    prune(rt, config, replace(opts, applying=True), "status" if subresource == "status" else "")
    return config


_JSON_NULL = re.compile(rb"[:\[,]\s*null\b")
"""Where a JSON text can hold a null value (after a colon, bracket or comma); "nullable" and
quoted text never match, so most bodies prove null-free with one scan."""


def _parse_apply(raw: bytes) -> Obj:
    """The apply configuration without null map values (as decoding into typed objects does)."""
    text = raw.decode("utf-8") if raw else ""
    try:
        config = json.loads(text)
        has_nulls = _JSON_NULL.search(raw) is not None
    except ValueError:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ApiError.bad_request(f"error decoding YAML: {exc}") from exc
        has_nulls = True
    if not isinstance(config, dict):
        raise ApiError.bad_request("apply configuration must be an object")
    return drop_nulls(config) if has_nulls else config
