"""The HTTP face: each path to its handler (health, version, discovery, OpenAPI, the admin
endpoints, resources), with the simulated faults on resource requests.

Resource verbs are served by `read_handlers`, `write_handlers` and `watching`; URLs are read by
`routing`; answers are written by `responses`.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from kubesim import discovery, openapi, read_handlers, routing, write_handlers
from kubesim.cluster import Cluster
from kubesim.errors import ApiError
from kubesim.faults import Faults
from kubesim.request_bodies import json_body
from kubesim.responses import aggregated_response, error_response, json_response
from kubesim.reviews import Reviews
from kubesim.routing import Route, is_review, verb_of
from kubesim.watching import WatchStreams

log = structlog.get_logger(__name__)

BOOKMARK_SECONDS = 1.0
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

ResourceHandler = Callable[[Cluster, web.Request, Route], Awaitable[web.StreamResponse]]
_VERBS: dict[str, ResourceHandler] = {
    "get": read_handlers.get,
    "list": read_handlers.list_objects,
    "create": write_handlers.create,
    "update": write_handlers.update,
    "patch": write_handlers.patch,
    "delete": write_handlers.delete,
    "deletecollection": write_handlers.delete_collection,
}
"""The handler of each verb but `watch` (see `WatchStreams`)."""

PathHandler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]


class KubeApi:
    """aiohttp handlers over one `Cluster`."""

    def __init__(
        self,
        cluster: Cluster,
        faults: Faults,
        reviews: Reviews,
        *,
        bookmark_seconds: float = BOOKMARK_SECONDS,
        aggregated_discovery: bool = True,
    ) -> None:
        self.cluster = cluster
        self.faults = faults
        self.reviews = reviews
        self.aggregated_discovery = aggregated_discovery
        self.watches = WatchStreams(cluster, bookmark_seconds=bookmark_seconds)
        self.requests: Counter[str] = Counter()
        """API requests answered so far, by verb (`discovery` for discovery and OpenAPI)."""
        self._heads: dict[str, PathHandler] = {
            "healthz": self._health,
            "livez": self._health,
            "readyz": self._health,
            "version": self._version,
            "kubesim": self._admin,
            "openapi": self._openapi,
            "api": self._api,
            "apis": self._api,
        }
        """The handler of each path's first segment."""

    def close_watches(self) -> None:
        self.watches.close()

    # --- entry point ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        try:
            return await self._dispatch(request, parts)
        except ApiError as err:
            return error_response(err)
        except Exception as exc:  # a kubesim bug: answer as the apiserver does, and log it
            log.exception("request_failed", method=request.method, path=request.path)
            return error_response(ApiError(500, "InternalError", f"kubesim: {exc!r}"))

    async def _dispatch(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        head = parts[0]
        if head in ("version", "openapi") or len(parts) <= {"api": 2, "apis": 3}.get(head, 0):
            self.requests["discovery"] += 1
        handler = self._heads.get(head)
        if handler is None:
            raise ApiError.not_found_path()
        return await handler(request, parts)

    async def _health(self, request: web.Request, parts: list[str]) -> web.Response:
        return web.Response(text="ok")

    async def _version(self, request: web.Request, parts: list[str]) -> web.Response:
        return json_response(discovery.version())

    async def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts[1:2] != ["v3"]:
            raise ApiError.not_found_path()
        if len(parts) == 2:
            return json_response(openapi.root(self.cluster.registry))
        return json_response(openapi.group_version(self.cluster.registry, parts[2:]))

    # --- /api and /apis -------------------------------------------------------------------

    async def _api(self, request: web.Request, parts: list[str]) -> web.StreamResponse:
        if request.method not in _METHODS:
            raise ApiError.not_found_path()
        answer = self._discovery(request, parts)
        if answer is not None:
            return answer
        return await self._resource(request, routing.route(self.cluster.registry, parts))

    def _discovery(self, request: web.Request, parts: list[str]) -> web.Response | None:
        """The discovery document a path up to a group version names (None: a resource)."""
        registry = self.cluster.registry
        head = parts[0]
        if (
            len(parts) == 1
            and self.aggregated_discovery
            and (wanted := discovery.aggregated_version(request.headers.get("Accept", "")))
        ):
            return aggregated_response(
                request, discovery.aggregated(registry, core=head == "api", version=wanted), wanted
            )
        if head == "api" and len(parts) == 1:
            return json_response(discovery.api_versions())
        if head == "apis" and len(parts) == 1:
            return json_response(discovery.api_group_list(registry))
        if head == "apis" and len(parts) == 2:
            return json_response(discovery.api_group(registry, parts[1]))
        if (head == "api" and len(parts) == 2) or (head == "apis" and len(parts) == 3):
            group = "" if head == "api" else parts[1]
            return json_response(discovery.resource_list(registry, group, parts[-1]))
        return None

    async def _resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        """A resource request, after the faults configured for its verb."""
        verb = verb_of(request, route)
        self.requests[verb] += 1
        if latency := self.faults.latency(verb):
            await asyncio.sleep(latency)
        if err := self.faults.error(verb):
            raise err
        if is_review(route):
            return await self._review(request, route)
        if verb == "watch":
            return await self.watches.serve(request, route, drop_after=self.faults.drop_watch_after)
        return await _VERBS[verb](self.cluster, request, route)

    async def _review(self, request: web.Request, route: Route) -> web.Response:
        """TokenRequest and the authentication/authorization reviews: answered, not stored."""
        kind = "TokenRequest" if route.subresource == "token" else route.rt.kind
        body = await json_body(request, kind)
        reviews = self.reviews
        if route.subresource == "token":
            assert route.name is not None and route.namespace is not None
            return json_response(reviews.token_request(route.namespace, route.name, body), 201)
        plural = route.rt.plural
        if plural == "tokenreviews":
            answer = reviews.token_review(body)
        elif plural == "subjectaccessreviews":
            answer = reviews.subject_access_review(body)
        elif plural == "localsubjectaccessreviews":
            assert route.namespace is not None
            answer = reviews.local_subject_access_review(route.namespace, body)
        else:
            requester = reviews.requester(request.headers.get("Authorization", ""))
            if plural == "selfsubjectreviews":
                answer = reviews.self_subject_review(body, requester)
            else:
                answer = reviews.self_subject_access_review(body, requester)
        return json_response(answer, 201)

    # --- admin ----------------------------------------------------------------------------

    async def _admin(self, request: web.Request, parts: list[str]) -> web.Response:
        """`/kubesim/faults` (read, set, clear) and `/kubesim/stats`."""
        if parts[1:] == ["faults"]:
            if request.method in ("PUT", "POST"):
                try:
                    faults = Faults.from_json(await request.read())
                except (ValueError, TypeError) as exc:
                    raise ApiError.bad_request(f"invalid faults: {exc}") from exc
                self.faults = faults
            elif request.method == "DELETE":
                self.faults = Faults()
            return json_response(self.faults.as_json())
        if parts[1:] == ["stats"]:
            store = self.cluster.store
            return json_response(
                {
                    "resourceVersion": store.rv,
                    "watchers": store.watcher_count,
                    "requests": dict(self.requests),
                    "objects": {
                        f"{g}/{r}" if g else r: store.count((g, r)) for g, r in store.storage_keys()
                    },
                }
            )
        raise ApiError.not_found_path()
