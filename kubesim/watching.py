"""Watch streams: the initial events (a snapshot, or the history after a resourceVersion),
then live events and bookmarks until the timeout, the client leaving, the server closing or a
simulated drop."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

from aiohttp import web

from kubesim import tables
from kubesim.cluster import Cluster
from kubesim.errors import ApiError
from kubesim.objects import Obj
from kubesim.read_handlers import selectors, table
from kubesim.resources import ResourceType
from kubesim.responses import JSON, dumps
from kubesim.routing import Route
from kubesim.store import StoredEvent, Watcher

DEFAULT_WATCH_SECONDS = 1800.0
CLIENT_CHECK_SECONDS = 1.0
"""How often an idle watch looks whether its client is still connected (a client that left
stops the watch at once when an event or bookmark is written to it)."""


class WatchStreams:
    """Every open watch of one server; `close` ends them all."""

    def __init__(self, cluster: Cluster, *, bookmark_seconds: float) -> None:
        self.cluster = cluster
        self.bookmark_seconds = bookmark_seconds
        self.closing = asyncio.Event()

    def close(self) -> None:
        self.closing.set()
        self.cluster.store.close_watchers()

    async def serve(
        self, request: web.Request, route: Route, *, drop_after: float
    ) -> web.StreamResponse:
        """One watch request; `drop_after` (> 0) aborts the connection after that many seconds."""
        q = request.query
        rt = route.rt
        store = self.cluster.store
        watcher = Watcher(
            storage_key=rt.storage_key,
            namespace=route.namespace if rt.namespaced else None,
            accepts=_accepts(request, route),
        )
        send_initial = q.get("sendInitialEvents") == "true"
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        seconds = float(q.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        # Subscribe and take the snapshot with no await between: no event falls in a gap.
        store.subscribe(watcher)
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        try:
            error: ApiError | None = None
            try:
                initial = self._initial(watcher, rt, q.get("resourceVersion", ""), send_initial)
            except ApiError as err:
                initial, error = [], err
            await resp.prepare(request)
            if error is not None:
                await resp.write(dumps({"type": "ERROR", "object": error.status()}) + b"\n")
                await resp.write_eof()
                return resp
            last_rv = store.rv
            encoder = _EventEncoder(self.cluster, request, rt)
            for event in initial:
                await resp.write(encoder.line(event.type, event.obj))
            if send_initial and bookmarks:
                await resp.write(_bookmark(rt, last_rv, initial_end=True))
            await self._follow(
                resp,
                watcher,
                encoder,
                seconds=seconds,
                bookmarks=bookmarks,
                drop_after=drop_after,
                request=request,
            )
        except ConnectionResetError:
            # The client closed the connection, as clients stop watching (kubectl once its
            # condition holds): the watch ends, no error. Logged as a kubesim bug, this used to
            # stall the server for seconds per watch (a traceback rendered with its locals).
            pass
        finally:
            store.unsubscribe(watcher)
        return resp

    def _initial(
        self, watcher: Watcher, rt: ResourceType, rv_param: str, send_initial: bool
    ) -> list[StoredEvent]:
        """The events a watch starts with: every object as ADDED when it starts from now (or
        asks for initial events), else the stored history after `rv_param`."""
        if rv_param in ("", "0") or send_initial:
            return [
                StoredEvent(rv=0, type="ADDED", storage_key=rt.storage_key, obj=obj)
                for obj in self.cluster.list_objects(rt, watcher.namespace, None, None)
                if watcher.accepts(obj)
            ]
        try:
            return self.cluster.store.events_after(int(rv_param), watcher)
        except ValueError:
            raise ApiError.bad_request(f"invalid resourceVersion {rv_param!r}") from None

    async def _follow(
        self,
        resp: web.StreamResponse,
        watcher: Watcher,
        encoder: _EventEncoder,
        *,
        seconds: float,
        bookmarks: bool,
        drop_after: float,
        request: web.Request,
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        drop_at = loop.time() + drop_after if drop_after > 0 else math.inf
        next_bookmark = loop.time() + self.bookmark_seconds if bookmarks else math.inf
        while not self.closing.is_set():
            if _client_left(request):
                return
            now = loop.time()
            if now >= deadline:
                break
            if now >= drop_at:
                if request.transport is not None:
                    request.transport.abort()
                return
            wait = min(deadline, drop_at, next_bookmark, now + CLIENT_CHECK_SECONDS) - now
            try:
                event = await asyncio.wait_for(watcher.queue.get(), timeout=max(wait, 0.001))
            except TimeoutError:
                if loop.time() >= next_bookmark:
                    await resp.write(_bookmark(encoder.rt, self.cluster.store.rv))
                    next_bookmark = loop.time() + self.bookmark_seconds
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


def _client_left(request: web.Request) -> bool:
    """Whether the watch's connection is closed or closing (its client went away)."""
    transport = request.transport
    return transport is None or transport.is_closing()


def _accepts(request: web.Request, route: Route) -> Callable[[Obj], bool]:
    """Whether an object belongs in the watch: its selectors, and its name when it names one."""
    labels, fields = selectors(request)
    name = route.name

    def accepts(obj: Obj) -> bool:
        if name is not None and obj["metadata"]["name"] != name:
            return False
        if labels and not all(r.matches(obj["metadata"].get("labels") or {}) for r in labels):
            return False
        return not fields or all(f.matches(obj) for f in fields)

    return accepts


def _bookmark(rt: ResourceType, rv: int, *, initial_end: bool = False) -> bytes:
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return (
        dumps(
            {
                "type": "BOOKMARK",
                "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata},
            }
        )
        + b"\n"
    )


class _EventEncoder:
    """Watch event lines: objects as stored, or one-row Tables when the client asked for them."""

    def __init__(self, cluster: Cluster, request: web.Request, rt: ResourceType) -> None:
        self.cluster = cluster
        self.request = request
        self.rt = rt
        self.as_table = tables.wants_table(request.headers.get("Accept", ""))
        self.first = True

    def line(self, kind: str, obj: Obj) -> bytes:
        body: Obj = self.cluster.view(self.rt, obj)
        if self.as_table:
            body = table(
                self.cluster,
                self.request,
                self.rt,
                [body],
                {"resourceVersion": body["metadata"]["resourceVersion"]},
                with_definitions=self.first,
            )
            self.first = False
        return dumps({"type": kind, "object": body}) + b"\n"
