"""The HTTP face: URL routing, verbs, lists with selectors and paging, watch streams, admin."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog
import yaml
from aiohttp import web

from kubesim import discovery, openapi, protobuf, tables
from kubesim.cluster import Cluster
from kubesim.crds import CRD_KEY
from kubesim.errors import ApiError
from kubesim.faults import Faults
from kubesim.objects import Obj
from kubesim.patching import APPLY_PATCH, PATCH_TYPES
from kubesim.resources import CREATE_ONLY_SUBRESOURCES, READ_ONLY_SUBRESOURCES, ResourceType
from kubesim.reviews import Reviews
from kubesim.selectors import parse_field_selector, parse_label_selector
from kubesim.store import StoredEvent, Watcher
from kubesim.write_options import FIELD_VALIDATIONS, WriteOptions

log = structlog.get_logger(__name__)

JSON = "application/json"
DEFAULT_WATCH_SECONDS = 1800.0
BOOKMARK_SECONDS = 1.0


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=_dumps(body), status=status, content_type=JSON, headers=headers)


def _aggregated_response(request: web.Request, document: Any, version: str) -> web.Response:
    """An aggregated discovery document with its ETag (304 when the client has it already)."""
    body = _dumps(document)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Vary": "Accept"}
    if etag in (t.strip() for t in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    response = web.Response(body=body, headers=headers)
    response.headers["Content-Type"] = discovery.aggregated_content_type(version)
    return response


def error_response(err: ApiError) -> web.Response:
    return json_response(err.status(), err.code, err.headers)


@dataclass(frozen=True, kw_only=True)
class Route:
    rt: ResourceType
    namespace: str | None  # None: cluster-scoped, or every namespace for a list
    name: str | None
    subresource: str


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
        self.bookmark_seconds = bookmark_seconds
        self.aggregated_discovery = aggregated_discovery
        self._closing = asyncio.Event()
        self.requests: Counter[str] = Counter()
        """API requests answered so far, by verb (`discovery` for discovery and OpenAPI)."""

    def close_watches(self) -> None:
        self._closing.set()
        self.cluster.store.close_watchers()

    # --- routing --------------------------------------------------------------------------

    def route(self, parts: list[str]) -> Route:
        registry = self.cluster.registry
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
        registry = self.cluster.registry
        if not parts:
            return json_response({"paths": ["/api", "/api/v1", "/apis", "/version"]})
        head = parts[0]
        if head in ("healthz", "livez", "readyz"):
            return web.Response(text="ok")
        if head in ("version", "openapi") or len(parts) <= {"api": 2, "apis": 3}.get(head, 0):
            self.requests["discovery"] += 1
        if head == "version":
            return json_response(discovery.version())
        if head == "kubesim":
            return await self._admin(request, parts[1:])
        if head == "openapi":
            if parts[1:2] != ["v3"]:
                raise ApiError.not_found_path()
            if len(parts) == 2:
                return json_response(openapi.root(registry))
            return json_response(openapi.group_version(registry, parts[2:]))
        if head not in ("api", "apis") or request.method not in (
            "GET",
            "POST",
            "PUT",
            "PATCH",
            "DELETE",
        ):
            raise ApiError.not_found_path()
        if (
            len(parts) == 1
            and self.aggregated_discovery
            and (wanted := discovery.aggregated_version(request.headers.get("Accept", "")))
        ):
            return _aggregated_response(
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
        route = self.route(parts)
        verb = self._verb(request, route)
        self.requests[verb] += 1
        if latency := self.faults.latency(verb):
            await asyncio.sleep(latency)
        if err := self.faults.error(verb):
            raise err
        if route.rt.review or route.subresource in CREATE_ONLY_SUBRESOURCES:
            return await self._review(request, route)
        if verb == "watch":
            return await self._watch(request, route)
        if verb == "list":
            return self._list(request, route)
        if verb == "get":
            return self._get(request, route)
        if verb == "create":
            return await self._create(request, route)
        if verb == "update":
            return await self._update(request, route)
        if verb == "patch":
            return await self._patch(request, route)
        if verb == "delete":
            return await self._delete(request, route)
        return await self._delete_collection(request, route)

    @staticmethod
    def _verb(request: web.Request, route: Route) -> str:
        method = request.method
        collection = route.name is None
        if route.rt.review or route.subresource in CREATE_ONLY_SUBRESOURCES:
            if method != "POST" or (route.rt.review and not collection):
                raise ApiError.method_not_allowed(
                    f"the server does not allow this method on the requested resource ({method})"
                )
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
            raise ApiError.method_not_allowed(
                f"the server does not allow this method on the requested resource ({method})"
            )
        verbs = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        if (
            method not in verbs
            or (route.subresource and method == "DELETE")
            or (route.subresource in READ_ONLY_SUBRESOURCES)
        ):
            raise ApiError.method_not_allowed(
                f"the server does not allow this method on the requested resource ({method})"
            )
        return verbs[method]

    # --- reviews --------------------------------------------------------------------------

    async def _review(self, request: web.Request, route: Route) -> web.Response:
        """TokenRequest and the authentication/authorization reviews: answered, not stored."""
        kind = "TokenRequest" if route.subresource == "token" else route.rt.kind
        body = await self._json_body(request, kind)
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

    # --- reads ----------------------------------------------------------------------------

    def _get(self, request: web.Request, route: Route) -> web.Response:
        assert route.name is not None
        obj = self.cluster.get(route.rt, route.namespace or "", route.name)
        if route.subresource == "scale":
            return json_response(_scale_of(route.rt, obj))
        if route.subresource == "log":
            return web.Response(text=pod_log(obj, request.query.get("container")))
        if tables.wants_table(request.headers.get("Accept", "")):
            return json_response(self._table(request, route.rt, [obj], {}))
        return json_response(obj)

    def _list(self, request: web.Request, route: Route) -> web.Response:
        q = request.query
        labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
        fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
        rv = self.cluster.store.rv
        items = self.cluster.list_objects(route.rt, route.namespace, labels, fields)
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        start = 0
        if token := q.get("continue"):
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(state["start"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ApiError.bad_request("invalid continue token") from exc
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
            return json_response(self._table(request, route.rt, items, metadata))
        body = {
            "kind": route.rt.list_kind,
            "apiVersion": route.rt.api_version,
            "metadata": metadata,
            "items": items,
        }
        return json_response(body)

    def _columns(self, rt: ResourceType) -> list[tables.Column]:
        if rt.custom:
            crd = self.cluster.store.get(CRD_KEY, "", f"{rt.plural}.{rt.group}")
            return tables.crd_columns(crd or {}, rt.version)
        return tables.columns_for(rt.storage_key)

    def _table(
        self,
        request: web.Request,
        rt: ResourceType,
        items: list[Obj],
        metadata: dict[str, Any],
        *,
        with_definitions: bool = True,
    ) -> dict[str, Any]:
        return tables.table(
            self._columns(rt),
            items,
            metadata,
            with_definitions=with_definitions,
            include_object=request.query.get("includeObject", "Metadata"),
        )

    # --- writes ---------------------------------------------------------------------------

    @staticmethod
    def _options(request: web.Request, *, apply: bool = False) -> WriteOptions:
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

    @staticmethod
    def _written(obj: Obj, opts: WriteOptions, status: int = 200) -> web.Response:
        """A write's answer, with a `Warning` header for each pruned unknown field."""
        response = json_response(obj, status)
        for text in opts.warnings:
            response.headers.add("Warning", "299 - " + json.dumps(text))
        return response

    @staticmethod
    async def _json_body(request: web.Request, kind: str) -> Any:
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

    async def _create(self, request: web.Request, route: Route) -> web.Response:
        body = await self._json_body(request, route.rt.kind)
        opts = self._options(request)
        obj = self.cluster.create(route.rt, route.namespace or "", body, opts)
        return self._written(obj, opts, 201)

    async def _update(self, request: web.Request, route: Route) -> web.Response:
        assert route.name is not None
        body = await self._json_body(request, route.rt.kind)
        if route.subresource == "scale":
            return json_response(self._write_scale(route, body))
        opts = self._options(request)
        obj = self.cluster.update(
            route.rt, route.namespace or "", route.name, body, opts, subresource=route.subresource
        )
        return self._written(obj, opts)

    async def _patch(self, request: web.Request, route: Route) -> web.Response:
        assert route.name is not None
        ctype = request.content_type
        if ctype not in PATCH_TYPES:
            raise ApiError.unsupported_media_type(", ".join(PATCH_TYPES))
        raw = await request.read()
        ns = route.namespace or ""
        if route.subresource == "scale":
            scale = _scale_of(route.rt, self.cluster.get(route.rt, ns, route.name))
            from kubesim.patching import apply_json_patch, apply_merge_patch

            patch = json.loads(raw or b"{}")
            patched = (
                apply_json_patch(scale, patch)
                if ctype == "application/json-patch+json"
                else apply_merge_patch(scale, patch)
            )
            return json_response(self._write_scale(route, patched))
        existed = (
            self.cluster.store.get(
                route.rt.storage_key, ns if route.rt.namespaced else "", route.name
            )
            is not None
        )
        opts = self._options(request, apply=ctype == APPLY_PATCH)
        obj = self.cluster.patch(
            route.rt, ns, route.name, ctype, raw, opts=opts, subresource=route.subresource
        )
        return self._written(obj, opts, 200 if existed else 201)

    def _write_scale(self, route: Route, scale: Any) -> Obj:
        assert route.name is not None
        if not isinstance(scale, dict):
            raise ApiError.bad_request("scale must be an object")
        obj = self.cluster.get(route.rt, route.namespace or "", route.name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError.invalid(
                "autoscaling",
                "Scale",
                route.name,
                [("FieldValueInvalid", "spec.replicas", "Invalid value: must be >= 0")],
            )
        new = {**obj, "spec": {**obj.get("spec", {}), "replicas": replicas}}
        saved = self.cluster.write(route.rt, obj, new)
        return _scale_of(route.rt, saved)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
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
        if policy not in (None, "Background", "Foreground", "Orphan"):
            raise ApiError.bad_request(f"unsupported propagationPolicy {policy!r}")
        return opts

    async def _delete(self, request: web.Request, route: Route) -> web.Response:
        assert route.name is not None
        opts = await self._delete_options(request)
        obj = self.cluster.delete(
            route.rt,
            route.namespace or "",
            route.name,
            propagation=opts.get("propagationPolicy"),
            preconditions=opts.get("preconditions"),
            opts=WriteOptions(dry_run="All" in (opts.get("dryRun") or [])),
        )
        return json_response(obj)

    async def _delete_collection(self, request: web.Request, route: Route) -> web.Response:
        opts = await self._delete_options(request)
        q = request.query
        labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
        fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
        deleted = []
        for obj in self.cluster.list_objects(route.rt, route.namespace, labels, fields):
            md = obj["metadata"]
            with contextlib.suppress(ApiError):
                deleted.append(
                    self.cluster.delete(
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
                "metadata": {"resourceVersion": str(self.cluster.store.rv)},
                "items": deleted,
            }
        )

    # --- watch ----------------------------------------------------------------------------

    async def _watch(self, request: web.Request, route: Route) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q["labelSelector"]) if q.get("labelSelector") else None
        fields = parse_field_selector(q["fieldSelector"]) if q.get("fieldSelector") else None
        rt = route.rt
        store = self.cluster.store

        def accepts(obj: Obj) -> bool:
            if labels and not all(r.matches(obj["metadata"].get("labels") or {}) for r in labels):
                return False
            return not fields or all(f.matches(obj) for f in fields)

        if route.name is not None:
            name = route.name
            base = accepts

            def accepts(obj: Obj) -> bool:
                return bool(obj["metadata"]["name"] == name and base(obj))

        watcher = Watcher(
            storage_key=rt.storage_key,
            namespace=route.namespace if rt.namespaced else None,
            accepts=accepts,
        )
        rv_param = q.get("resourceVersion", "")
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(q.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        drop_after = self.faults.drop_watch_after
        # Subscribe and take the snapshot with no await between: no event falls in a gap.
        store.subscribe(watcher)
        try:
            initial: list[StoredEvent] = []
            error: ApiError | None = None
            if rv_param in ("", "0") or send_initial:
                for obj in self.cluster.list_objects(rt, watcher.namespace, None, None):
                    if accepts(obj):
                        initial.append(
                            StoredEvent(rv=0, type="ADDED", storage_key=rt.storage_key, obj=obj)
                        )
            else:
                try:
                    initial = store.events_after(int(rv_param), watcher)
                except ValueError:
                    error = ApiError.bad_request(f"invalid resourceVersion {rv_param!r}")
                except ApiError as err:
                    error = err
            resp = web.StreamResponse(headers={"Content-Type": JSON})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            if error is not None:
                await resp.write(_dumps({"type": "ERROR", "object": error.status()}) + b"\n")
                await resp.write_eof()
                return resp
            last_rv = store.rv
            encoder = _EventEncoder(self, request, rt)
            for event in initial:
                await resp.write(encoder.line(event.type, event.obj))
            if send_initial and bookmarks:
                await resp.write(self._bookmark(rt, last_rv, initial_end=True))
            await self._follow(
                resp,
                watcher,
                rt,
                encoder,
                seconds=timeout,
                bookmarks=bookmarks,
                drop_after=drop_after,
                request=request,
            )
            return resp
        finally:
            store.unsubscribe(watcher)

    async def _follow(
        self,
        resp: web.StreamResponse,
        watcher: Watcher,
        rt: ResourceType,
        encoder: _EventEncoder,
        *,
        seconds: float,
        bookmarks: bool,
        drop_after: float,
        request: web.Request,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        drop_at = loop.time() + drop_after if drop_after > 0 else None
        next_bookmark = time.monotonic() + self.bookmark_seconds
        while not self._closing.is_set():
            now = loop.time()
            if now >= deadline:
                break
            if drop_at is not None and now >= drop_at:
                if request.transport is not None:
                    request.transport.abort()
                return
            wait = deadline - now
            if drop_at is not None:
                wait = min(wait, drop_at - now)
            if bookmarks:
                wait = min(wait, max(0.0, next_bookmark - time.monotonic()))
            try:
                event = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.001))
            except TimeoutError:
                if bookmarks and time.monotonic() >= next_bookmark:
                    await resp.write(self._bookmark(rt, self.cluster.store.rv))
                    next_bookmark = time.monotonic() + self.bookmark_seconds
                continue
            if event is None:
                break
            chunk = [encoder.line(event.type, event.obj)]
            while not watcher.queue.empty():
                more = watcher.queue.get_nowait()
                if more is None:
                    break
                chunk.append(encoder.line(more.type, more.obj))
            await resp.write(b"".join(chunk))
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
        metadata: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
        return (
            _dumps(
                {
                    "type": "BOOKMARK",
                    "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata},
                }
            )
            + b"\n"
        )

    # --- admin ----------------------------------------------------------------------------

    async def _admin(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts == ["faults"]:
            if request.method in ("PUT", "POST"):
                try:
                    faults = Faults.from_json(await request.read())
                except (ValueError, TypeError) as exc:
                    raise ApiError.bad_request(f"invalid faults: {exc}") from exc
                self.faults = faults
            elif request.method == "DELETE":
                self.faults = Faults()
            return json_response(self.faults.as_json())
        if parts == ["stats"]:
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


class _EventEncoder:
    """Watch event lines: objects as stored, or one-row Tables when the client asked for them."""

    def __init__(self, api: KubeApi, request: web.Request, rt: ResourceType) -> None:
        self.api = api
        self.request = request
        self.rt = rt
        self.as_table = tables.wants_table(request.headers.get("Accept", ""))
        self.first = True

    def line(self, kind: str, obj: Obj) -> bytes:
        body: Obj = self.api.cluster.view(self.rt, obj)
        if self.as_table:
            body = self.api._table(
                self.request,
                self.rt,
                [body],
                {"resourceVersion": body["metadata"]["resourceVersion"]},
                with_definitions=self.first,
            )
            self.first = False
        return _dumps({"type": kind, "object": body}) + b"\n"


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


def _scale_of(rt: ResourceType, obj: Obj) -> Obj:
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
