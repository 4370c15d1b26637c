"""What a request carries: its body (JSON, YAML or protobuf) and its write or delete options."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from kubesim import protobuf
from kubesim.errors import ApiError
from kubesim.write_options import FIELD_VALIDATIONS, WriteOptions

PROPAGATION_POLICIES = (None, "Background", "Foreground", "Orphan")


async def json_body(request: web.Request, kind: str) -> Any:
    """The body as JSON data (`kind` names the object a protobuf body holds)."""
    raw = await request.read()
    ctype = request.content_type
    if ctype == protobuf.PROTOBUF:
        return protobuf.decode(raw, kind)
    if ctype.endswith("yaml"):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ApiError.bad_request(f"error decoding YAML: {exc}") from exc
    try:
        return json.loads(raw or b"null")
    except ValueError as exc:
        raise ApiError.bad_request(f"error decoding JSON: {exc}") from exc


def write_options(request: web.Request, *, apply: bool = False) -> WriteOptions:
    """fieldManager (else, except for apply, the User-Agent's product), dryRun, force and
    fieldValidation of a write."""
    q = request.query
    manager = q.get("fieldManager")
    if not manager and not apply:
        manager = request.headers.get("User-Agent", "unknown").split("/", 1)[0][:128]
    validation = q.get("fieldValidation") or "Warn"
    if validation not in FIELD_VALIDATIONS:
        options = {"POST": "CreateOptions", "PUT": "UpdateOptions"}.get(
            request.method, "PatchOptions"
        )
        raise ApiError.invalid(
            "meta.k8s.io",
            options,
            "",
            [
                (
                    "FieldValueNotSupported",
                    "fieldValidation",
                    f'Unsupported value: "{validation[:64]}": supported values: '
                    '"Ignore", "Strict", "Warn"',
                )
            ],
        )
    return WriteOptions(
        manager=manager or None,
        dry_run="All" in q.getall("dryRun", []),
        force=q.get("force") in ("true", "1"),
        field_validation=validation,
    )


async def delete_options(request: web.Request) -> dict[str, Any]:
    """DeleteOptions from the body (JSON or protobuf) and the query."""
    raw = await request.read()
    opts: dict[str, Any] = {}
    if raw and request.content_type == protobuf.PROTOBUF:
        opts = protobuf.decode(raw, "DeleteOptions")
    elif raw:
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ApiError.bad_request(f"error decoding DeleteOptions: {exc}") from exc
        if isinstance(parsed, dict):
            opts = parsed
    q = request.query
    if "propagationPolicy" in q:
        opts["propagationPolicy"] = q["propagationPolicy"]
    if "dryRun" in q:
        opts["dryRun"] = q.getall("dryRun")
    if q.get("orphanDependents") == "true" or opts.get("orphanDependents") is True:
        opts.setdefault("propagationPolicy", "Orphan")
    policy = opts.get("propagationPolicy")
    if policy not in PROPAGATION_POLICIES:
        raise ApiError.bad_request(f"unsupported propagationPolicy {policy!r}")
    return opts
