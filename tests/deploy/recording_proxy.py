"""A loopback HTTP proxy in front of kubesim that records every API request an adapter makes,
and the RBAC permission (group, resource, verb) each one needs on a real API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from adapters.rbac.permissions import Permission

APPLY_PATCH = "application/apply-patch+yaml"


@dataclass(frozen=True, kw_only=True)
class Request:
    """One request as the API server's authorizer sees it, and how it ended."""

    method: str
    path: str
    query: str
    content_type: str
    status: int

    def permissions(self) -> list[Permission]:
        """What RBAC checks for this request (kube-apiserver's request-info rules); discovery
        paths need nothing beyond ``system:discovery`` and give []."""
        parts = [p for p in self.path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, rest = "", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, rest = parts[1], parts[3:]
        else:
            return []
        if not rest:
            return []  # group-version discovery
        if rest[0] == "namespaces" and len(rest) >= 3:
            rest = rest[2:]  # a namespaced collection
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        if len(rest) > 2:
            resource = f"{resource}/{rest[2]}"
        verbs = self._verbs(has_name=bool(name))
        return [Permission(group=group, resource=resource, verb=verb) for verb in verbs]

    def _verbs(self, *, has_name: bool) -> list[str]:
        if self.method == "GET":
            if "watch=true" in self.query or "watch=1" in self.query:
                return ["watch"]
            return ["get"] if has_name else ["list"]
        if self.method == "PATCH":
            # An apply that creates the object is also authorized as `create`.
            created = self.content_type.startswith(APPLY_PATCH) and self.status == 201
            return ["patch", "create"] if created else ["patch"]
        if self.method == "DELETE":
            return ["delete"] if has_name else ["deletecollection"]
        return {"POST": ["create"], "PUT": ["update"]}.get(self.method, [self.method.lower()])


class RecordingProxy:
    """Forwards to ``upstream`` and keeps every `Request`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[Request] = []
        self.url = ""
        self._client: aiohttp.ClientSession | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._client is not None
        body = await request.read()
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with self._client.request(
            request.method, self.upstream + request.path_qs, data=body or None, headers=headers
        ) as answer:
            payload = await answer.read()
            self.requests.append(
                Request(
                    method=request.method,
                    path=request.path,
                    query=request.query_string,
                    content_type=request.headers.get("Content-Type", ""),
                    status=answer.status,
                )
            )
            return web.Response(
                body=payload,
                status=answer.status,
                content_type=answer.content_type,
            )

    def write_kubeconfig(self, original: Path, path: Path) -> Path:
        """``original`` with its server pointed at this proxy."""
        config = yaml.safe_load(original.read_text(encoding="utf-8"))
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = self.url
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path


@asynccontextmanager
async def recording_proxy(upstream: str) -> AsyncIterator[RecordingProxy]:
    """A running `RecordingProxy` on 127.0.0.1, port 0."""
    proxy = RecordingProxy(upstream)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", proxy._handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.base_events.Server)
    port = server.sockets[0].getsockname()[1]
    proxy.url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as client:
        proxy._client = client
        try:
            yield proxy
        finally:
            await runner.cleanup()
