"""ClusterSession against kubesim: kubeconfig loading, discovery refresh, server-side apply
change detection, reads, deletes, and how failures are described."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from aiohttp import ClientSession, web
from kubernetes.aio.client.exceptions import ApiException

from adapters.kit.apply.api_requests import RetrySettings
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError, describe_error, for_mesh
from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.model.objects import ObjectRef
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.kit.judged_kubeconfigs import judged
from tests.serving.certificates import CertificateAuthority, Issued

GADGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.meshplane.io"},
    "spec": {
        "group": "example.meshplane.io",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


def config_map(name: str, value: str, namespace: str = "default") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"suite": "cluster"}},
        "data": {"value": value},
    }


@pytest.fixture
async def session(kubesim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        yield cluster


async def test_connects_from_kubeconfig_text_with_context(kubesim: RunningSim) -> None:
    text = kubesim.kubeconfig.read_text()
    context = yaml.safe_load(text)["current-context"]
    async with await ClusterSession.connect(
        kubeconfig=judged(text, context=context), name="sim"
    ) as s:
        assert s.name == "sim"
        assert s.server.startswith("http://127.0.0.1:")
        assert await s.has_kind("v1", "ConfigMap")
        assert await s.has_kind("apps/v1", "Deployment")
        assert not await s.has_kind("v1", "Gadget")


def _client_certificate_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("meshplane-client-*"))


def _entries(directory: Path) -> list[Path]:
    return list(directory.iterdir())


@pytest.fixture
def private_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own temporary directory, so other test processes' clients cannot show up
    in it while it looks."""
    directory = tmp_path / "temp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


async def serve_version_to_client_certificates(
    authority: CertificateAuthority, users: list[str]
) -> web.AppRunner:
    """An HTTPS `/version` on loopback that demands a client certificate issued by
    ``authority`` and appends each caller's common name to ``users``."""
    serving = authority.issue("api", server=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=authority.cert_path)
    tls.load_cert_chain(serving.cert_path, serving.key_path)
    tls.verify_mode = ssl.CERT_REQUIRED

    async def version(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(part[0] for part in (peer or {}).get("subject", ()))
        users.append(str(subject.get("commonName")))
        return web.json_response({"gitVersion": "v1.30.0"})

    app = web.Application()
    app.router.add_get("/version", version)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return runner


def inline_kubeconfig(server: str, authority: CertificateAuthority, client: Issued) -> str:
    """A kubeconfig carrying the CA and ``client``'s certificate and key as inline data."""

    def data(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump(
        {
            "clusters": [
                {
                    "name": "c",
                    "cluster": {
                        "server": server,
                        "certificate-authority-data": data(authority.cert_path),
                    },
                }
            ],
            "users": [
                {
                    "name": "ada",
                    "user": {
                        "client-certificate-data": data(client.cert_path),
                        "client-key-data": data(client.key_path),
                    },
                }
            ],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "ada"}}],
            "current-context": "x",
        }
    )


async def test_inline_ca_and_client_certificate_reach_tls_and_leave_no_file(
    tmp_path: Path, private_temp_dir: Path
) -> None:
    """A judged kubeconfig's CA and client certificate are used for TLS (the server demands a
    client certificate) and the certificate's temporary files are gone once connected."""
    authority = CertificateAuthority(tmp_path, "kube")
    users: list[str] = []
    runner = await serve_version_to_client_certificates(authority, users)
    port = runner.addresses[0][1]
    text = inline_kubeconfig(
        f"https://127.0.0.1:{port}", authority, authority.issue("ada", server=False)
    )
    try:
        async with await ClusterSession.connect(kubeconfig=judged(text)) as session:
            assert _client_certificate_dirs() == set()
            assert _entries(private_temp_dir) == []
            assert await session.server_version() == "v1.30.0"
        assert users == ["ada"]
    finally:
        await runner.cleanup()


async def test_bad_kubeconfig_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("{{{ not yaml")
    with pytest.raises(ApplyError) as caught:
        await ClusterSession.connect(kubeconfig_path=path)
    assert caught.value.detail.code == "KUBECONFIG_INVALID"
    path.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(ApplyError) as caught:
        await ClusterSession.connect(kubeconfig_path=path, context="nope")
    assert caught.value.detail.code == "KUBECONFIG_INVALID"


async def test_unreachable_server_is_explained(kubesim: RunningSim) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = yaml.safe_load(kubesim.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"http://127.0.0.1:{port}"
    session = await ClusterSession.connect(
        kubeconfig=judged(yaml.safe_dump(config)),
        retry=RetrySettings(attempts=2, initial_delay=0.01),
    )
    async with session:
        with pytest.raises(ApplyError) as caught:
            await session.get("v1", "ConfigMap", "anything", "default")
    detail = caught.value.detail
    assert detail.code == "CLUSTER_UNREACHABLE"
    assert "kubeconfig server URL" in detail.suggested_remediation
    assert str(port) in detail.message


async def test_apply_reports_whether_anything_changed(session: ClusterSession) -> None:
    created, changed = await session.apply(config_map("settings", "1"))
    assert changed
    first_version = created["metadata"]["resourceVersion"]

    same, changed = await session.apply(config_map("settings", "1"))
    assert not changed
    assert same["metadata"]["resourceVersion"] == first_version

    updated, changed = await session.apply(config_map("settings", "2"))
    assert changed
    assert updated["data"] == {"value": "2"}
    managers = {entry["manager"] for entry in updated["metadata"]["managedFields"]}
    assert "meshplane" in managers


async def test_apply_with_a_known_previous_version_skips_the_read(session: ClusterSession) -> None:
    created, _ = await session.apply(config_map("known", "1"))
    version = created["metadata"]["resourceVersion"]
    _, changed = await session.apply(config_map("known", "1"), previous_version=version)
    assert not changed
    _, changed = await session.apply(config_map("known", "2"), previous_version=version)
    assert changed


async def test_is_a_cluster_reader_for_plan_builders(session: ClusterSession) -> None:
    reader: ClusterReader = session  # checked by mypy: the catalogue's read protocol
    assert await reader.has_kind("v1", "Namespace")
    assert await reader.get("v1", "Namespace", "default") is not None
    assert await reader.list("v1", "Namespace", label_selector="no-such-label") == []


async def test_get_list_and_delete(session: ClusterSession) -> None:
    await session.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    await session.apply(config_map("a", "1"))
    await session.apply(config_map("b", "1", namespace="other"))
    await session.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "other"}}
    )

    everywhere = await session.list("v1", "ConfigMap", label_selector="suite=cluster")
    assert sorted(obj["metadata"]["name"] for obj in everywhere) == ["a", "b"]
    assert all(obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1" for obj in everywhere)
    in_other = await session.list("v1", "ConfigMap", "other", label_selector="suite=cluster")
    assert [obj["metadata"]["name"] for obj in in_other] == ["b"]
    assert await session.list("example.meshplane.io/v1", "Gadget") == []

    ref = ObjectRef(api_version="v1", kind="ConfigMap", namespace="default", name="a")
    found = await session.get_ref(ref)
    assert found is not None and found["data"] == {"value": "1"}
    assert await session.get("v1", "ConfigMap", "missing", "default") is None
    assert await session.get("example.meshplane.io/v1", "Gadget", "x", "default") is None

    assert await session.delete(ref)
    assert not await session.delete(ref)
    assert await session.get_ref(ref) is None


async def test_discovery_finds_a_kind_whose_crd_was_just_created(session: ClusterSession) -> None:
    assert not await session.has_kind("example.meshplane.io/v1", "Gadget")
    gadget = {
        "apiVersion": "example.meshplane.io/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": "default"},
        "spec": {"size": 2},
    }
    with pytest.raises(ApplyError) as caught:
        await session.apply(gadget)
    assert caught.value.detail.code == "KIND_NOT_INSTALLED"
    assert "install the mesh" in caught.value.detail.suggested_remediation

    await session.apply(GADGET_CRD)
    for _ in range(200):
        crd = await session.get_ref(ObjectRef.from_manifest(GADGET_CRD))
        conditions = (crd or {}).get("status", {}).get("conditions", [])
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            break
        await asyncio.sleep(0.02)

    assert await session.has_kind("example.meshplane.io/v1", "Gadget")
    _, changed = await session.apply(gadget)
    assert changed
    assert len(await session.list("example.meshplane.io/v1", "Gadget", "default")) == 1

    assert await session.delete(ObjectRef.from_manifest(GADGET_CRD))
    for _ in range(200):
        if not await session.list("example.meshplane.io/v1", "Gadget"):
            break
        await asyncio.sleep(0.02)
    assert await session.list("example.meshplane.io/v1", "Gadget") == []


async def test_invalid_object_carries_the_causes(session: ClusterSession) -> None:
    bad_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "bad", "namespace": "default"},
        "spec": {"type": "Sideways", "ports": [{"port": 80}]},
    }
    with pytest.raises(ApplyError) as caught:
        await session.apply(bad_service)
    detail = caught.value.detail
    assert detail.code == "KUBE_INVALID"
    assert "spec.type" in detail.probable_cause
    assert "Service default/bad" in detail.message


async def test_missing_namespace_is_named(session: ClusterSession) -> None:
    with pytest.raises(ApplyError) as caught:
        await session.apply(config_map("lost", "1", namespace="nowhere"))
    assert caught.value.detail.code == "NAMESPACE_NOT_FOUND"
    assert "nowhere" in caught.value.detail.message


def _api_error(status: int, body: dict[str, object]) -> ApiException:
    error = ApiException(status=status, reason="from the server")
    error.body = json.dumps(body)
    return error


def test_forbidden_names_the_missing_permission() -> None:
    """The real API server's words (tests/realkube/test_least_privilege.py sees them live)."""
    ref = ObjectRef(api_version="apps/v1", kind="Deployment", namespace="mesh", name="istiod")
    message = (
        'deployments.apps "istiod" is forbidden: User "system:serviceaccount:mp:adapter" '
        'cannot patch resource "deployments" in API group "apps" in the namespace "mesh"'
    )
    error = _api_error(403, {"kind": "Status", "reason": "Forbidden", "message": message})
    detail = for_mesh(describe_error(error, verb="apply", resource="deployments", ref=ref), "x")
    assert detail.code == "KUBE_FORBIDDEN"
    assert 'lacks the permission patch on deployments in API group "apps" in namespace "mesh"' in (
        detail.message
    )
    assert message in detail.message and "system:serviceaccount:mp:adapter" in detail.message
    assert 'verbs ["patch"] on resources ["deployments"] in apiGroups ["apps"]' in (
        detail.suggested_remediation
    )
    assert "`meshplane rbac x` prints the ClusterRole" in detail.suggested_remediation

    cluster_scope = message.replace(' in the namespace "mesh"', " at the cluster scope")
    error = _api_error(403, {"message": cluster_scope.replace("patch", "delete")})
    detail = describe_error(error, verb="delete", resource="deployments", ref=ref)
    assert 'delete on deployments in API group "apps" at the cluster scope' in detail.message


def test_forbidden_tells_escalation_and_admission_apart() -> None:
    ref = ObjectRef(
        api_version="rbac.authorization.k8s.io/v1",
        kind="ClusterRole",
        namespace="",
        name="mesh-policy",
    )
    escalation = (
        'clusterroles.rbac.authorization.k8s.io "mesh-policy" is forbidden: user '
        '"system:serviceaccount:mp:adapter" (groups=["system:serviceaccounts"]) is attempting '
        "to grant RBAC permissions not currently held:\n"
        '{APIGroups:["policy.example.io"], Resources:["servers"], Verbs:["watch"]}'
    )
    detail = describe_error(
        _api_error(403, {"message": escalation}), verb="apply", resource="clusterroles", ref=ref
    )
    assert detail.code == "KUBE_FORBIDDEN"
    assert 'lacks: {APIGroups:["policy.example.io"], Resources:["servers"], Verbs:["watch"]}' in (
        detail.message
    )
    assert "escalation" in detail.probable_cause
    assert "`meshplane rbac MESH`" in detail.suggested_remediation

    terminating = (
        'configmaps "c" is forbidden: unable to create new content in namespace gone because '
        "it is being terminated"
    )
    detail = describe_error(
        _api_error(403, {"message": terminating}), verb="apply", resource="configmaps"
    )
    assert detail.code == "KUBE_FORBIDDEN"
    assert terminating in detail.message
    assert "admission" in detail.probable_cause


def test_a_binding_whose_role_is_missing_is_not_a_missing_kind() -> None:
    """What the real API server answers an identity without `bind` applying a binding before
    its role exists: 404 naming the object, not an unserved kind."""
    ref = ObjectRef(
        api_version="rbac.authorization.k8s.io/v1",
        kind="ClusterRoleBinding",
        namespace="",
        name="mesh-policy",
    )
    body = {
        "message": 'clusterroles.rbac.authorization.k8s.io "mesh-policy" not found',
        "details": {"name": "mesh-policy", "group": "rbac.authorization.k8s.io"},
    }
    detail = for_mesh(
        describe_error(
            _api_error(404, body), verb="apply", resource="clusterrolebindings", ref=ref
        ),
        "x",
    )
    assert detail.code == "OBJECT_NOT_FOUND"
    assert "the role the ClusterRoleBinding refers to does not exist" in detail.probable_cause
    assert "`meshplane rbac x`" in detail.suggested_remediation


def test_unauthorized_and_server_errors_are_told_apart() -> None:
    assert describe_error(_api_error(401, {}), verb="get", resource="pods").code == (
        "KUBE_UNAUTHORIZED"
    )
    assert describe_error(_api_error(503, {}), verb="get", resource="pods").code == (
        "KUBE_SERVER_ERROR"
    )
    assert describe_error(_api_error(429, {}), verb="get", resource="pods").code == (
        "KUBE_THROTTLED"
    )
    conflict = describe_error(_api_error(409, {"message": "conflict"}), verb="apply", resource="x")
    assert conflict.code == "KUBE_CONFLICT"


def test_every_error_shape_of_the_table_is_told_apart() -> None:
    """Each status (and each meaning of a 404) gets its own code; an unlisted one a generic
    code carrying the server's reason."""
    ref = ObjectRef(api_version="mesh.example.io/v1", kind="Route", namespace="app", name="r")
    causes = {"details": {"causes": [{"field": "spec.port", "message": "must be positive"}]}}

    def code(status: int, body: dict[str, object], verb: str = "apply") -> str:
        return describe_error(_api_error(status, body), verb=verb, resource="routes", ref=ref).code

    assert code(400, causes) == "KUBE_BAD_REQUEST"
    assert code(422, causes) == "KUBE_INVALID"
    assert code(404, {"details": {"kind": "namespaces", "name": "app"}}) == "NAMESPACE_NOT_FOUND"
    assert code(404, {}) == "KIND_NOT_INSTALLED"
    assert code(404, {}, verb="delete") == "OBJECT_NOT_FOUND"
    invalid = describe_error(_api_error(400, causes), verb="apply", resource="routes", ref=ref)
    assert invalid.probable_cause == "spec.port: must be positive"
    teapot = describe_error(
        _api_error(418, {"reason": "Teapot", "message": "short and stout"}),
        verb="get",
        resource="routes",
    )
    assert teapot.code == "KUBE_ERROR"
    assert teapot.probable_cause == "Teapot" and "HTTP 418 short and stout" in teapot.message


def test_an_unreachable_admission_webhook_is_named() -> None:
    """What a real API server answers when a failurePolicy Fail webhook has no backend."""
    ref = ObjectRef(
        api_version="networking.istio.io/v1", kind="Gateway", namespace="default", name="gw"
    )
    message = (
        'Internal error occurred: failed calling webhook "validation.istio.io": failed to call '
        'webhook: Post "https://istiod.istio-system.svc:443/validate?timeout=10s": dial tcp '
        "10.96.0.20:443: connect: network is unreachable"
    )
    error = _api_error(500, {"kind": "Status", "reason": "InternalError", "message": message})
    detail = describe_error(error, verb="apply", resource="gateways", ref=ref)
    assert detail.code == "WEBHOOK_UNAVAILABLE"
    assert (
        'webhook "validation.istio.io"' in detail.message and "Gateway default/gw" in detail.message
    )
    assert "network is unreachable" in detail.message
    assert "istiod" in detail.suggested_remediation


@pytest.fixture
def tls_kubesim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(tls=True, ready_delay=0.05)) as sim:
        yield sim


async def test_works_over_tls_with_the_kubeconfig_ca(tls_kubesim: RunningSim) -> None:
    config = yaml.safe_load(tls_kubesim.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")
    async with await ClusterSession.connect(kubeconfig_path=tls_kubesim.kubeconfig) as session:
        _, changed = await session.apply(config_map("over-tls", "1"))
        assert changed
        assert await session.get("v1", "ConfigMap", "over-tls", "default") is not None


async def _forwarding_proxy(seen: list[str]) -> AsyncIterator[str]:
    """A loopback HTTP forward proxy: records each absolute request URL and relays it."""
    relay = ClientSession()

    async def forward(request: web.Request) -> web.Response:
        seen.append(str(request.url))
        async with relay.request(
            request.method, request.url, headers=request.headers, data=await request.read()
        ) as answer:
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
        await relay.close()


@pytest.mark.parametrize("bypassed", [False, True], ids=["proxied", "no_proxy"])
async def test_environment_proxy_is_honoured_without_per_request_lookups(
    kubesim: RunningSim, monkeypatch: pytest.MonkeyPatch, bypassed: bool
) -> None:
    # The session reads HTTP_PROXY/NO_PROXY once (the client would look them up, and ~/.netrc,
    # in a thread on every request); requests still go through the proxy unless bypassed.
    seen: list[str] = []
    proxies = _forwarding_proxy(seen)
    proxy = await anext(proxies)
    try:
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy)
        if bypassed:
            monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
            assert await cluster.server_version()
            await cluster.apply(config_map("via-proxy", "1"))
            assert await cluster.get("v1", "ConfigMap", "via-proxy", "default") is not None
    finally:
        await proxies.aclose()
    if bypassed:
        assert seen == []
    else:
        assert seen[0] == f"{kubesim.url}/version"
        assert f"{kubesim.url}/api/v1/namespaces/default/configmaps/via-proxy" in seen


async def _established(session: ClusterSession, crd: dict[str, object]) -> None:
    for _ in range(200):
        found = await session.get_ref(ObjectRef.from_manifest(crd))
        conditions = (found or {}).get("status", {}).get("conditions", [])
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the CRD never became Established")


async def test_a_long_lived_session_sees_crds_come_and_go(session: ClusterSession) -> None:
    # One session serves many operations: render capabilities follow group-versions added and
    # removed since, and applying a kind whose CRD went away says the kind is not installed.
    assert "example.meshplane.io/v1" not in await session.api_versions()
    await session.apply(GADGET_CRD)
    await _established(session, GADGET_CRD)
    served = await session.api_versions()
    assert {"example.meshplane.io/v1", "example.meshplane.io/v1/Gadget"} <= set(served)
    gadget = {
        "apiVersion": "example.meshplane.io/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": "default"},
    }
    await session.apply(gadget)

    assert await session.delete(ObjectRef.from_manifest(GADGET_CRD))
    for _ in range(200):
        if "example.meshplane.io/v1" not in await session.api_versions():
            break
        await asyncio.sleep(0.02)
    assert "example.meshplane.io/v1/Gadget" not in await session.api_versions()


async def test_applying_a_kind_whose_crd_was_deleted_names_the_kind(
    session: ClusterSession, kubesim: RunningSim
) -> None:
    await session.apply(GADGET_CRD)
    await _established(session, GADGET_CRD)
    assert await session.has_kind("example.meshplane.io/v1", "Gadget")  # now cached
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as other:
        assert await other.delete(ObjectRef.from_manifest(GADGET_CRD))
        for _ in range(200):
            if not await other.has_kind("example.meshplane.io/v1", "Gadget"):
                break
            await asyncio.sleep(0.02)
    gadget = {
        "apiVersion": "example.meshplane.io/v1",
        "kind": "Gadget",
        "metadata": {"name": "g1", "namespace": "default"},
    }
    with pytest.raises(ApplyError) as caught:
        await session.apply(gadget)
    assert caught.value.detail.code == "KIND_NOT_INSTALLED"


def discovery_requests(sim: RunningSim) -> int:
    count: int = sim.call(lambda: sim.sim.api.requests["discovery"])
    return count


async def test_aggregated_discovery_answers_everything_in_two_requests(
    kubesim: RunningSim,
) -> None:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        before = discovery_requests(kubesim)
        served = await cluster.api_versions()
        assert discovery_requests(kubesim) - before == 2
        assert {"v1/ConfigMap", "apps/v1/Deployment", "policy/v1/PodDisruptionBudget"} <= set(
            served
        )
        resource = await cluster.resource_for("apps/v1", "Deployment")
        assert resource is not None and resource.plural == "deployments" and resource.namespaced
        assert discovery_requests(kubesim) - before == 2  # resolved from the same answer


async def test_an_older_server_is_read_per_group_version_and_kept_for_the_ttl() -> None:
    # Servers before aggregated discovery: one document per group-version, kept until the TTL.
    with running_kubesim(SimConfig(aggregated_discovery=False)) as legacy:
        async with await ClusterSession.connect(
            kubeconfig_path=legacy.kubeconfig, discovery_ttl=0.0
        ) as cluster:
            first = await cluster.api_versions()
            before = discovery_requests(legacy)
            again = await cluster.api_versions()
            expired = discovery_requests(legacy) - before
        async with await ClusterSession.connect(kubeconfig_path=legacy.kubeconfig) as cluster:
            assert await cluster.api_versions() == first == again
            before = discovery_requests(legacy)
            await cluster.api_versions()
            cached = discovery_requests(legacy) - before
    assert "apps/v1/Deployment" in first
    assert cached == 2  # /api and /apis only
    assert expired > 10
