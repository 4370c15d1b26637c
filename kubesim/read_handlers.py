"""Reads: get (with the scale and log subresources), list with selectors and paging, and
both as Tables when the client asks for them."""

from __future__ import annotations

import base64
import json
from typing import Any

from aiohttp import web

from kubesim import tables
from kubesim.cluster import Cluster
from kubesim.crds import CRD_KEY
from kubesim.errors import ApiError
from kubesim.objects import Obj
from kubesim.resources import ResourceType
from kubesim.responses import json_response
from kubesim.routing import Route
from kubesim.selectors import (
    FieldRequirement,
    Requirement,
    parse_field_selector,
    parse_label_selector,
)


def selectors(
    request: web.Request,
) -> tuple[list[Requirement] | None, list[FieldRequirement] | None]:
    """The request's labelSelector and fieldSelector (None where it has none)."""
    q = request.query
    labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
    fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
    return labels, fields


async def get(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    assert route.name is not None
    obj = cluster.get(route.rt, route.namespace or "", route.name)
    if route.subresource == "scale":
        return json_response(scale_of(obj))
    if route.subresource == "log":
        return web.Response(text=pod_log(obj, request.query.get("container")))
    if tables.wants_table(request.headers.get("Accept", "")):
        return json_response(table(cluster, request, route.rt, [obj], {}))
    return json_response(obj)


async def list_objects(cluster: Cluster, request: web.Request, route: Route) -> web.Response:
    q = request.query
    labels, fields = selectors(request)
    rv = cluster.store.rv
    items = cluster.list_objects(route.rt, route.namespace, labels, fields)
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    start = _continue_start(q.get("continue"))
    limit = int(q.get("limit") or 0)
    if start:
        items = items[start:]
    if limit > 0 and len(items) > limit:
        metadata["continue"] = base64.urlsafe_b64encode(
            json.dumps({"start": start + limit, "rv": rv}).encode()
        ).decode()
        metadata["remainingItemCount"] = len(items) - limit
        items = items[:limit]
    if tables.wants_table(request.headers.get("Accept", "")):
        return json_response(table(cluster, request, route.rt, items, metadata))
    body = {
        "kind": route.rt.list_kind,
        "apiVersion": route.rt.api_version,
        "metadata": metadata,
        "items": items,
    }
    return json_response(body)


def _continue_start(token: str | None) -> int:
    """Where a list resumes: the offset its `continue` token carries (0 without one)."""
    if not token:
        return 0
    try:
        state = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(state["start"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ApiError.bad_request("invalid continue token") from exc


def _columns(cluster: Cluster, rt: ResourceType) -> list[tables.Column]:
    if rt.custom:
        crd = cluster.store.get(CRD_KEY, "", f"{rt.plural}.{rt.group}")
        return tables.crd_columns(crd or {}, rt.version)
    return tables.columns_for(rt.storage_key)


def table(
    cluster: Cluster,
    request: web.Request,
    rt: ResourceType,
    items: list[Obj],
    metadata: dict[str, Any],
    *,
    with_definitions: bool = True,
) -> dict[str, Any]:
    return tables.table(
        _columns(cluster, rt),
        items,
        metadata,
        with_definitions=with_definitions,
        include_object=request.query.get("includeObject", "Metadata"),
    )


def pod_log(pod: Obj, container: str | None) -> str:
    """What `kubectl logs` shows for a simulated pod: no program runs, so a line per start."""
    md = pod["metadata"]
    containers = [c for c in pod.get("spec", {}).get("containers") or [] if isinstance(c, dict)]
    if container is None:
        if len(containers) != 1:
            names = " ".join(c.get("name", "") for c in containers)
            raise ApiError.bad_request(
                f"a container name must be specified for pod {md['name']}, choose one of: [{names}]"
            )
        container = containers[0].get("name", "")
    spec = next((c for c in containers if c.get("name") == container), None)
    if spec is None:
        raise ApiError.bad_request(f"container {container} is not valid for pod {md['name']}")
    statuses = {s.get("name"): s for s in pod.get("status", {}).get("containerStatuses") or []}
    state = (statuses.get(container) or {}).get("state") or {}
    if "running" not in state and "terminated" not in state:
        reason = (state.get("waiting") or {}).get("reason", "ContainerCreating")
        raise ApiError.bad_request(
            f'container "{container}" in pod "{md["name"]}" is waiting to start: {reason}'
        )
    return f"kubesim: container {container} started from image {spec.get('image')}\n"


def scale_of(obj: Obj) -> Obj:
    """The Scale (autoscaling/v1) of a workload."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    selector = spec.get("selector") or {}
    match = ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items())
    md = obj["metadata"]
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: md[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in md
        },
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {"replicas": status.get("replicas", 0), "selector": match},
    }
