"""Every object a meshplane adapter manages in a cluster, found without knowing the kinds."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from adapters.kit.model.plans import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kubesim.kubeconfig import TOKEN

__all__ = ["managed_objects"]


async def managed_objects(cluster: str | Path) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every object labelled managed-by=meshplane, any served kind.

    ``cluster`` is kubesim's URL (plain HTTP, kubesim's bearer token) or a kubeconfig file (any
    server: kubesim or the real API server, token or client certificate). Reads discovery and
    lists each listable resource across namespaces in a worker thread, so no kind can be
    forgotten.
    """
    access = _Access.of_url(cluster) if isinstance(cluster, str) else _Access.of_kubeconfig(cluster)
    return await asyncio.to_thread(_managed_objects, access)


class _Access:
    """Where a cluster is and how to authenticate to it, for plain urllib requests."""

    def __init__(
        self, server: str, headers: dict[str, str], context: ssl.SSLContext | None
    ) -> None:
        self.server = server.rstrip("/")
        self.headers = headers
        self.context = context

    @classmethod
    def of_url(cls, server: str) -> _Access:
        return cls(server, {"Authorization": f"Bearer {TOKEN}"}, None)

    @classmethod
    def of_kubeconfig(cls, path: Path) -> _Access:
        config = yaml.safe_load(path.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        if not str(cluster["server"]).startswith("https:"):
            return cls(cluster["server"], headers, None)
        tls = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        if user.get("client-certificate-data"):
            with tempfile.TemporaryDirectory() as scratch:
                cert, key = Path(scratch) / "client.crt", Path(scratch) / "client.key"
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                tls.load_cert_chain(cert, key)
        return cls(cluster["server"], headers, tls)

    def get(self, path: str, *, attempts: int = 30) -> Any:
        """GET ``path`` as JSON. A 429 is retried after its Retry-After: the real API server
        answers so while the watch cache of a just-created CRD's resource is not ready yet."""
        request = urllib.request.Request(self.server + path, headers=self.headers)
        for _ in range(attempts - 1):
            try:
                with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 429:
                    raise
                time.sleep(min(float(exc.headers.get("Retry-After") or 1), 5.0))
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            return json.loads(response.read())


def _managed_objects(access: _Access) -> list[tuple[str, str, str]]:
    selector = urllib.parse.quote(f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
    found: list[tuple[str, str, str]] = []
    for path, kind in _list_paths(access):
        try:
            listed = access.get(f"{path}?labelSelector={selector}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            continue  # the kind went away since discovery (its CRD was just deleted)
        for item in listed.get("items") or []:
            metadata = item.get("metadata") or {}
            found.append((kind, str(metadata.get("namespace", "")), str(metadata.get("name", ""))))
    return sorted(found)


def _list_paths(access: _Access) -> list[tuple[str, str]]:
    versions = ["/api/v1"]
    for group in access.get("/apis").get("groups") or []:
        versions.append(f"/apis/{group['preferredVersion']['groupVersion']}")
    paths: list[tuple[str, str]] = []
    for version in versions:
        try:
            served = access.get(version)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            continue  # the group went away since /apis was read
        for resource in served.get("resources") or []:
            if "/" in resource["name"] or "list" not in (resource.get("verbs") or []):
                continue
            paths.append((f"{version}/{resource['name']}", str(resource["kind"])))
    return paths
