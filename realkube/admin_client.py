"""A small blocking HTTPS client for the control plane's own start-up checks (health, Nodes,
the default ServiceAccount), authenticated by a client certificate. Adapters and tests use
their own clients; this one only needs the standard library."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, kw_only=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class AdminClient:
    """Requests to ``url`` (https://host:port) trusting ``ca`` and presenting ``cert``/``key``."""

    def __init__(self, url: str, *, ca: Path, cert: Path, key: Path, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.hostname is None or parts.port is None:
            raise ValueError(f"not an https://host:port URL: {url}")
        self.host = parts.hostname
        self.port = parts.port
        self._timeout = timeout
        self._context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
        self._context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: Any = None) -> Reply:
        """One request; OSError (refused, reset, timed out) propagates to the caller."""
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self._context, timeout=self._timeout
        )
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            return Reply(status=response.status, body=response.read())
        finally:
            connection.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Reply:
        return self.request("POST", path, body)
