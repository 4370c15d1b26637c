"""Writes: create, update, patch (the scale subresource too), delete and deletecollection."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from kubesim.cluster import Cluster
from kubesim.errors import ApiError
from kubesim.objects import Obj
from kubesim.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    PATCH_TYPES,
    apply_json_patch,
    apply_merge_patch,
)
from kubesim.read_handlers import scale_of, selectors
from kubesim.request_bodies import delete_options, json_body, write_options
from kubesim.responses import json_response, written
from kubesim.routing import Route
from kubesim.write_options import WriteOptions


async def create(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    body = await json_body(request, route.rt.kind)
    opts = write_options(request)
    obj = cluster.create(route.rt, route.namespace or "", body, opts)
    return written(obj, opts, 201)


async def update(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    assert route.name is not None
    body = await json_body(request, route.rt.kind)
    if route.subresource == "scale":
        return json_response(_write_scale(cluster, route, body))
    opts = write_options(request)
    obj = cluster.update(
        route.rt, route.namespace or "", route.name, body, opts, subresource=route.subresource
    )
    return written(obj, opts)


async def patch(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    assert route.name is not None
    ctype = request.content_type
    if ctype not in PATCH_TYPES:
        raise ApiError.unsupported_media_type(", ".join(PATCH_TYPES))
    raw = await request.read()
    ns = route.namespace or ""
    if route.subresource == "scale":
        scale = scale_of(cluster.get(route.rt, ns, route.name))
        scale_patch = json.loads(raw or b"{}")
        patched = (
            apply_json_patch(scale, scale_patch)
            if ctype == JSON_PATCH
            else apply_merge_patch(scale, scale_patch)
        )
        return json_response(_write_scale(cluster, route, patched))
    existed = (
        cluster.store.get(route.rt.storage_key, ns if route.rt.namespaced else "", route.name)
        is not None
    )
    opts = write_options(request, apply=ctype == APPLY_PATCH)
    obj = cluster.patch(
        route.rt, ns, route.name, ctype, raw, opts=opts, subresource=route.subresource
    )
    return written(obj, opts, 200 if existed else 201)


def _write_scale(cluster: Cluster, route: Route, scale: Any) -> Obj:
    assert route.name is not None
    if not isinstance(scale, dict):
        raise ApiError.bad_request("scale must be an object")
    obj = cluster.get(route.rt, route.namespace or "", route.name)
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError.invalid(
            "autoscaling",
            "Scale",
            route.name,
            [("FieldValueInvalid", "spec.replicas", "Invalid value: must be >= 0")],
        )
    new = {**obj, "spec": {**obj.get("spec", {}), "replicas": replicas}}
    saved = cluster.write(route.rt, obj, new)
    return scale_of(saved)


async def delete(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    assert route.name is not None
    opts = await delete_options(request)
    obj = cluster.delete(
        route.rt,
        route.namespace or "",
        route.name,
        propagation=opts.get("propagationPolicy"),
        preconditions=opts.get("preconditions"),
        opts=WriteOptions(dry_run="All" in (opts.get("dryRun") or [])),
    )
    return json_response(obj)


async def delete_collection(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    opts = await delete_options(request)
    labels, fields = selectors(request)
    deleted = []
    for obj in cluster.list_objects(route.rt, route.namespace, labels, fields):
        md = obj["metadata"]
        with contextlib.suppress(ApiError):
            deleted.append(
                cluster.delete(
                    route.rt,
                    md.get("namespace", ""),
                    md["name"],
                    propagation=opts.get("propagationPolicy"),
                    opts=WriteOptions(dry_run="All" in (opts.get("dryRun") or [])),
                )
            )
    return json_response(
        {
            "kind": route.rt.list_kind,
            "apiVersion": route.rt.api_version,
            "metadata": {"resourceVersion": str(cluster.store.rv)},
            "items": deleted,
        }
    )
