"""Every upstream chart and manifest: server-side apply, re-apply as a no-op, delete cleanly.

Charts are rendered with helm-python-sdk (offline, as an installer does); manifests are read as
they are. Each case gets a fresh cluster. Needs ../shared/fixtures; skips without it.

kubesim only: "re-applying wrote nothing" is read from kubesim's write counter; the same charts
install, re-install unchanged and uninstall on the real server through the adapters in
tests/e2e (parameter `realkube`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config, dynamic
from kubernetes.dynamic.exceptions import NotFoundError

from kubesim.discovery import KUBE_VERSION
from kubesim.harness import RunningSim, running_kubesim
from kubesim.resources import BUILTIN_TYPES
from kubesim.server import SimConfig
from tests.fixtures_paths import SHARED_FIXTURES, shared_fixtures

MANAGER = "meshplane"
FIRST = (
    "Namespace",
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ConfigMap",
    "Secret",
)

CHARTS = sorted(
    p.relative_to(SHARED_FIXTURES / "charts").as_posix()
    for p in (SHARED_FIXTURES / "charts").glob("*/*.tgz")
)
MANIFESTS = sorted(
    p.relative_to(SHARED_FIXTURES).as_posix()
    for d in ("apps", "addons", "smi")
    for p in (SHARED_FIXTURES / d).glob("*.yaml")
)
NEEDS_ISTIO_CRDS = ("bookinfo-gateway", "bookinfo-virtual-service", "bookinfo-destination-rule")


def _linkerd_identity() -> dict[str, Any]:
    """A root CA and an issuer signed by it (ECDSA P-256), as linkerd's chart requires."""
    now = datetime.datetime.now(datetime.UTC)
    pem = serialization.Encoding.PEM

    def cert(name: str, key: Any, issuer: tuple[str, Any] | None) -> x509.Certificate:
        issuer_name, issuer_key = issuer or (name, key)
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )

    root_key, issuer_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = cert("root.linkerd.cluster.local", root_key, None)
    issuer = cert(
        "identity.linkerd.cluster.local", issuer_key, ("root.linkerd.cluster.local", root_key)
    )
    key_pem = issuer_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "identityTrustAnchorsPEM": root.public_bytes(pem).decode(),
        "identity": {
            "issuer": {
                "tls": {"crtPEM": issuer.public_bytes(pem).decode(), "keyPEM": key_pem.decode()}
            }
        },
    }


def _documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind")]


def render_chart(relative: str) -> tuple[str, list[dict[str, Any]]]:
    import helm_python as helm
    from helm_python import _native

    path = shared_fixtures() / "charts" / relative
    chart = helm.Chart.load(str(path))
    name = chart.name
    values: dict[str, Any] = {}
    if name == "istiod":
        values = {"profile": "demo"}
    elif name == "linkerd-control-plane":
        values = _linkerd_identity()
    namespace = {"hashicorp": "consul", "istio": "istio-system", "linkerd": "linkerd"}[
        relative.split("/", maxsplit=1)[0]
    ]
    # Rendered for the cluster it goes to, as Helm does against a live one: kubesim's version
    # and what it serves (group/version and group/version/Kind). The SDK's Python wrapper does
    # not pass these options through; its native render takes them.
    options = {
        "name": name,
        "namespace": namespace,
        "is_install": True,
        "kube_version": KUBE_VERSION["gitVersion"],
        "api_versions": sorted(
            {t.api_version for t in BUILTIN_TYPES}
            | {f"{t.api_version}/{t.kind}" for t in BUILTIN_TYPES}
        ),
    }
    rendered = json.loads(
        _native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options))
    )
    docs = [
        d
        for template, text in sorted(rendered.items())
        if not template.endswith("NOTES.txt")
        for d in _documents(text)
    ]
    docs += [d for crd in chart.crds for d in _documents(crd.get("data", ""))]
    # helm test hooks are not part of an install
    docs = [
        d
        for d in docs
        if "test"
        not in ((d.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    ]
    return namespace, docs


def _order(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def rank(doc: dict[str, Any]) -> int:
        kind = doc["kind"]
        return FIRST.index(kind) if kind in FIRST else len(FIRST)

    return sorted(docs, key=rank)


class Applier:
    def __init__(self, sim: RunningSim, api: client.ApiClient, namespace: str) -> None:
        self.sim = sim
        self.dyn = dynamic.DynamicClient(api)
        self.namespace = namespace

    def _resource(self, doc: dict[str, Any]) -> Any:
        return self.dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])

    def _namespace_of(self, resource: Any, doc: dict[str, Any]) -> str | None:
        if not resource.namespaced:
            return None
        return str((doc.get("metadata") or {}).get("namespace") or self.namespace)

    def apply(self, doc: dict[str, Any]) -> str:
        resource = self._resource(doc)
        made = resource.server_side_apply(
            body=doc, namespace=self._namespace_of(resource, doc), field_manager=MANAGER
        )
        return str(made.metadata.resourceVersion)

    def delete(self, doc: dict[str, Any]) -> None:
        resource = self._resource(doc)
        with contextlib.suppress(NotFoundError):  # removed with its namespace or its CRD
            resource.delete(
                name=doc["metadata"]["name"],
                namespace=self._namespace_of(resource, doc),
                body={"propagationPolicy": "Background"},
            )

    def exists(self, doc: dict[str, Any]) -> bool:
        resource = self._resource(doc)
        try:
            resource.get(name=doc["metadata"]["name"], namespace=self._namespace_of(resource, doc))
        except NotFoundError:
            return False
        return True

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.sim.url}/kubesim/stats", timeout=10) as resp:
            result: dict[str, Any] = json.loads(resp.read())
            return result

    def settle(self, quiet: float = 0.4, timeout: float = 30.0) -> int:
        """Wait until the simulated controllers stop writing; return the resourceVersion."""
        deadline = time.monotonic() + timeout
        last = self.stats()["resourceVersion"]
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.stats()["resourceVersion"]
            if now == last:
                return int(now)
            last = now
        raise AssertionError("the cluster did not settle")


def check_install_reapply_delete(
    namespace: str, docs: list[dict[str, Any]], prerequisites: list[dict[str, Any]] = ()
) -> None:
    assert docs, "nothing to apply"
    with (
        running_kubesim(SimConfig(ready_delay=0)) as sim,
        config.new_client_from_config(config_file=str(sim.kubeconfig)) as api,
    ):
        applier = Applier(sim, api, namespace)
        named = {(d.get("metadata") or {}).get("namespace") for d in docs} - {None}
        for name in sorted({namespace} | named - {"default"}):
            applier.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        for doc in _order(list(prerequisites)):
            applier.apply(doc)
        ordered = _order(docs)
        first = [applier.apply(doc) for doc in ordered]
        assert all(first)
        before = applier.settle()
        again = [applier.apply(doc) for doc in ordered]
        after = applier.stats()["resourceVersion"]
        assert after == before, "re-applying the same objects wrote something"
        assert len(again) == len(first)
        for doc in reversed(ordered):
            applier.delete(doc)
        deadline = time.monotonic() + 30
        remaining = [d for d in ordered if applier.exists(d)]
        while remaining and time.monotonic() < deadline:
            time.sleep(0.1)
            remaining = [d for d in remaining if applier.exists(d)]
        assert not remaining, [(d["kind"], d["metadata"]["name"]) for d in remaining]
        # dependents went too: only what every namespace has is left in the release's
        applier.settle()
        objects = applier.stats()["objects"]
        core = client.CoreV1Api(api)
        assert core.list_namespaced_pod(namespace).items == []
        apps = client.AppsV1Api(api)
        assert apps.list_namespaced_replica_set(namespace).items == []
        assert objects.get("discovery.k8s.io/endpointslices", 0) == len(
            client.DiscoveryV1Api(api).list_endpoint_slice_for_all_namespaces().items
        )
        assert [
            e.metadata.name
            for e in core.list_namespaced_endpoints(namespace).items
            if e.metadata.name != "kubernetes"
        ] == []


@pytest.mark.parametrize("relative", CHARTS or ["(none)"])
def test_chart_applies_reapplies_and_deletes(relative: str) -> None:
    shared_fixtures()
    namespace, docs = render_chart(relative)
    prerequisites: list[dict[str, Any]] = []
    if "linkerd-control-plane" in relative:
        version = relative.rsplit("-", 1)[-1]
        prerequisites = render_chart(f"linkerd/linkerd-crds-{version}")[1]
    check_install_reapply_delete(namespace, docs, prerequisites)


@pytest.mark.parametrize("relative", MANIFESTS or ["(none)"])
def test_manifest_applies_reapplies_and_deletes(relative: str) -> None:
    root = shared_fixtures()
    docs = _documents((root / relative).read_text())
    prerequisites: list[dict[str, Any]] = []
    if any(name in relative for name in NEEDS_ISTIO_CRDS):
        prerequisites = [
            d
            for d in render_chart("istio/base-1.30.3.tgz")[1]
            if d["kind"] == "CustomResourceDefinition"
        ]
    check_install_reapply_delete("default", docs, prerequisites)


def test_fixture_lists_are_complete() -> None:
    root = shared_fixtures()
    assert len(CHARTS) == len(list(Path(root / "charts").glob("*/*.tgz"))) >= 12
    assert len(MANIFESTS) >= 18
