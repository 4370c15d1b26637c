"""The JSON answers the API server writes: objects, errors, aggregated discovery, writes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aiohttp import web

from kubesim import discovery
from kubesim.errors import ApiError
from kubesim.objects import Obj
from kubesim.write_options import WriteOptions

JSON = "application/json"


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=dumps(body), status=status, content_type=JSON, headers=headers)


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), err.code, err.headers)


def aggregated_response(request: web.Request, document: Any, version: str) -> web.Response:
    """An aggregated discovery document with its ETag (304 when the client has it already)."""
    body = dumps(document)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Vary": "Accept"}
    if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=body, headers=headers)
    response.headers["Content-Type"] = discovery.aggregated_content_type(version)
    return response


def written(obj: Obj, opts: WriteOptions, status: int = 200) -> web.Response:
    """A write's answer, with a `Warning` header for each pruned unknown field."""
    response = json_response(obj, status)
    for text in opts.warnings:
        response.headers.add("Warning", "299 - " + json.dumps(text))
    return response
