"""The `server` fixture: each API-semantics test runs against kubesim and the real API server.

`kubesim` is a fresh simulator per test; `realkube` (marker `realkube`, run by
scripts/kube-test.sh inside a loopback-only network namespace) is the session's one real
control plane, where a test gets a fresh namespace and its cluster-scoped leftovers (names
carrying its suffix) are deleted afterwards. Tests that need kubesim itself (fault injection,
its stats endpoint, its CLI, its internals) take the plain `kubesim` fixture instead.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from kubesim.harness import running_kubesim
from kubesim.kubeconfig import TOKEN
from realkube.certificates import ADMIN
from realkube.control_plane import ControlPlane
from tests.kubesim.servers import ApiServer, client_context
from tests.kubesim.support import eventually, raw_request
from tests.plugins.kubesim import FAST

SERVERS = ["kubesim", pytest.param("realkube", marks=pytest.mark.realkube)]
# A test about kubesim's own behaviour (its fault annotation, its settings) narrows `server`
# to it: `@KUBESIM_ONLY`, with a line saying why.
KUBESIM_ONLY = pytest.mark.parametrize("server", ["kubesim"], indirect=True)
# Cluster-scoped kinds a test may create; whatever carries its suffix is deleted after it.
CLUSTER_SCOPED = (
    "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
    "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "/api/v1/namespaces",
)


def _prepare_namespace(server: ApiServer) -> None:
    code, body = raw_request(
        server, "POST", "/api/v1/namespaces", {"metadata": {"name": server.namespace}}
    )
    assert code == 201, body
    # Pods need the namespace's default ServiceAccount (the real one makes it asynchronously).
    path = f"/api/v1/namespaces/{server.namespace}/serviceaccounts/default"
    eventually(lambda: raw_request(server, "GET", path)[0] == 200, timeout=30)


def _remove_leftovers(server: ApiServer) -> None:
    for collection in CLUSTER_SCOPED:
        code, listing = raw_request(server, "GET", collection)
        if code != 200:
            continue
        for item in listing.get("items") or []:
            name: str = item["metadata"]["name"]
            if server.suffix in name:
                query = {"propagationPolicy": "Background"}
                raw_request(server, "DELETE", f"{collection}/{name}", query=query)


def _real_server(plane: ControlPlane, namespace: str, suffix: str) -> ApiServer:
    pki = plane.pki
    return ApiServer(
        kind="realkube",
        url=plane.url,
        kubeconfig=plane.kubeconfig,
        namespace=namespace,
        suffix=suffix,
        ssl_context=client_context(pki.ca_cert, pki.client_cert(ADMIN), pki.client_key(ADMIN)),
        anonymous_ssl_context=client_context(pki.ca_cert),
        ca_file=pki.ca_cert,
        admin_user=ADMIN.user,
    )


@contextmanager
def _serving(request: pytest.FixtureRequest, *, tls: bool) -> Iterator[ApiServer]:
    suffix = "t" + secrets.token_hex(3)
    namespace = f"ns-{suffix}"
    if request.param == "kubesim":
        with running_kubesim(replace(FAST, tls=tls)) as sim:
            ca_file = _kubesim_ca(sim.kubeconfig) if tls else None
            context = client_context(ca_file) if ca_file is not None else None
            made = ApiServer(
                kind="kubesim",
                url=sim.url,
                kubeconfig=sim.kubeconfig,
                namespace=namespace,
                suffix=suffix,
                ssl_context=context,
                anonymous_ssl_context=context,
                ca_file=ca_file,
                admin_headers={"Authorization": f"Bearer {TOKEN}"},
                admin_user="kubesim-admin",
                sim=sim,
            )
            _prepare_namespace(made)
            yield made
        return
    plane: ControlPlane = request.getfixturevalue("real_kube")
    made = _real_server(plane, namespace, suffix)
    _prepare_namespace(made)
    try:
        yield made
    finally:
        _remove_leftovers(made)


def _kubesim_ca(kubeconfig: Path) -> Path:
    """The CA of a TLS kubesim, from its kubeconfig, as a file beside it."""
    config_doc: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    data = config_doc["clusters"][0]["cluster"]["certificate-authority-data"]
    path = kubeconfig.parent / "ca.crt"
    path.write_bytes(base64.b64decode(data))
    return path


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """The API server for one test, with a fresh namespace of its own."""
    with _serving(request, tls=False) as made:
        yield made


@pytest.fixture(params=SERVERS)
def tls_server(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """As `server`, kubesim serving HTTPS (kubectl sends bearer tokens over HTTPS only)."""
    with _serving(request, tls=True) as made:
        yield made


@pytest.fixture(scope="module", params=SERVERS)
def module_server(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """As `server`, shared by a test module (one kubesim, or one namespace on the real one)."""
    with _serving(request, tls=False) as made:
        yield made


@pytest.fixture
def api(server: ApiServer) -> Iterator[client.ApiClient]:
    """The typed client bound to `server` (its kubeconfig)."""
    with config.new_client_from_config(config_file=str(server.kubeconfig)) as made:
        yield made


@pytest.fixture
def ns(server: ApiServer) -> str:
    """The test's own namespace on `server`."""
    return server.namespace
