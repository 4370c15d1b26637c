"""Resource URLs: the type, namespace, name and subresource a path names, and the verb a
request on it is."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from kubesim.errors import ApiError
from kubesim.resources import (
    CREATE_ONLY_SUBRESOURCES,
    READ_ONLY_SUBRESOURCES,
    ResourceRegistry,
    ResourceType,
)

_WRITE_VERBS = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True, kw_only=True)
class Route:
    rt: ResourceType
    namespace: str | None  # None: cluster-scoped, or every namespace for a list
    name: str | None
    subresource: str


def route(registry: ResourceRegistry, parts: list[str]) -> Route:
    """The resource `/api/...` or `/apis/...` path `parts` name (404 for anything else)."""
    if parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    else:
        group, version, rest = parts[1], parts[2], parts[3:]
    namespace: str | None = None
    if (
        rest[0] == "namespaces"
        and len(rest) >= 3
        and not (not group and len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        raise ApiError.not_found_path()
    rt = registry.lookup(group, version, plural)
    if sub and sub not in rt.subresources:
        raise ApiError.not_found_path()
    if namespace is not None and not rt.namespaced:
        raise ApiError.not_found_path()
    if rt.namespaced and namespace is None and name is not None:
        raise ApiError.not_found_path()
    return Route(rt=rt, namespace=namespace, name=name, subresource=sub)


def is_review(route: Route) -> bool:
    """Reviews and TokenRequests: created, answered and never stored."""
    return route.rt.review or route.subresource in CREATE_ONLY_SUBRESOURCES


def verb_of(request: web.Request, route: Route) -> str:
    """The API verb of `request` on `route` (405 for a method the resource does not allow)."""
    method = request.method
    collection = route.name is None
    if is_review(route):
        if method != "POST" or (route.rt.review and not collection):
            raise _not_allowed(method)
        return "create"
    if method == "GET":
        if request.query.get("watch") in ("true", "1"):
            return "watch"
        return "list" if collection else "get"
    if collection:
        if method == "POST":
            return "create"
        if method == "DELETE":
            return "deletecollection"
        raise _not_allowed(method)
    if (
        method not in _WRITE_VERBS
        or (route.subresource and method == "DELETE")
        or (route.subresource in READ_ONLY_SUBRESOURCES)
    ):
        raise _not_allowed(method)
    return _WRITE_VERBS[method]


def _not_allowed(method: str) -> ApiError:
    return ApiError.method_not_allowed(
        f"the server does not allow this method on the requested resource ({method})"
    )
