"""`static_http_server`: serve a directory over loopback HTTP, count requests, go offline on demand.

A real server (http.server in a thread, 127.0.0.1, port 0), so chart repositories and manifest
sources are exercised through aiohttp exactly as against an upstream host. It runs outside the
test's event loop, so sync and async tests can both use it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest


class StaticHttpServer:
    """One running server; `url` ends in '/'."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._failures: list[int] = []
        handler = partial(_Handler, server_state=self, directory=str(directory))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}/"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"static-http-{port}",
            daemon=True,
        )
        self._thread.start()
        self._running = True

    def requests(self, path: str | None = None) -> int:
        """Requests seen in total, or for one URL path (e.g. ``/index.yaml``)."""
        with self._lock:
            return sum(self._counts.values()) if path is None else self._counts[path]

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (to exercise retries)."""
        with self._lock:
            self._failures.extend([status] * count)

    def stop(self) -> None:
        """Close the listening socket: later connections are refused, as when offline."""
        if not self._running:
            return
        self._running = False
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _record(self, path: str) -> int | None:
        with self._lock:
            self._counts[path] += 1
            return self._failures.pop(0) if self._failures else None


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, server_state: StaticHttpServer, **kwargs: Any) -> None:
        self._state = server_state
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        failure = self._state._record(self.path.split("?", 1)[0])
        if failure is not None:
            self.send_error(failure)
            return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on counts, not on access logs."""


@pytest.fixture
def static_http_server() -> Iterator[Callable[[Path], StaticHttpServer]]:
    """Factory: ``static_http_server(directory)`` starts a server; all stop at teardown."""
    servers: list[StaticHttpServer] = []

    def start(directory: Path) -> StaticHttpServer:
        server = StaticHttpServer(Path(directory))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
