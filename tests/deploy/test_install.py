"""The chart installs into kubesim with meshplane's own apply engine, the containers' commands
and environment are what the `meshplane` parser accepts, and the coordinator discovers the
chart's adapter Services."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

import pytest

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.plans import ApplyPlan, Progress, ProgressKind, WaitPolicy
from adapters.kit.process.settings import settings_from_args as adapter_settings
from coordinator.server.kube_discovery import ADAPTER_LABEL, SERVICE_NAME_LABEL
from coordinator.server.settings import settings_from_args as coordinator_settings
from kubesim.harness import RunningSim
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from meshplane_cli.main import build_parser
from serving.tls import ClientTls, TlsConfig
from tests.coordinator.routing_harness import coordinator, fakes, make_settings
from tests.deploy.chart import NAMESPACE, container, find, meshes_with_rbac, of_kind, render

COORDINATOR = "mp-meshplane-coordinator"
TLS_DIR = Path("/etc/meshplane/tls")
TLS_SECRET = "meshplane-tls"
LINK_DIR = Path("/etc/meshplane/link")
LINK_TOKEN = "a-link-token-of-64-random-characters-0123456789abcdefghijklmnopq"
TLS_VALUES: dict[str, dict[str, Any]] = {
    "plaintext": {},
    "tls": {"tls": {"enabled": True, "secretName": TLS_SECRET}},
    "tls-coordinator": {
        "tls": {"enabled": True, "secretName": TLS_SECRET, "coordinator": {"enabled": True}}
    },
}


def _all_adapters() -> dict[str, Any]:
    """Values enabling every adapter whose generated role is committed."""
    return {"adapters": {mesh: {"enabled": True} for mesh in meshes_with_rbac()}}


def _environment(deployment: dict[str, Any], token_file: Path) -> dict[str, str]:
    """The container's environment as the pod would see it (fieldRefs resolved, the link
    token file it names stood in for by ``token_file``)."""
    env: dict[str, str] = {}
    for item in container(deployment)["env"]:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif item["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            env[item["name"]] = deployment["metadata"]["namespace"]
        else:
            env[item["name"]] = "postgresql://meshplane@db/meshplane"  # a secretKeyRef
    for name in (
        "MESHPLANE_ADAPTER_COORDINATOR_TOKEN_FILE",
        "MESHPLANE_COORDINATOR_ADAPTER_TOKEN_FILE",
    ):
        if name in env:
            assert env[name] == str(LINK_DIR / "token")
            env[name] = str(token_file)
    return env


def assert_adapter_runs_as_deployed(
    deployment: dict[str, Any], args: argparse.Namespace, env: dict[str, str], tls: bool
) -> None:
    """The adapter's settings: its gRPC port, state and cache dirs, link token, TLS, probes."""
    from adapters.kit.process.mesh_registry import load_declaration

    declaration = load_declaration(args.mesh)
    adapter = adapter_settings(args, declaration, env)
    (port,) = (p for p in container(deployment)["ports"] if p["name"] == "grpc")
    assert (adapter.host, adapter.port) == ("0.0.0.0", port["containerPort"])
    assert adapter.state_dir == Path("/var/lib/meshplane/state")
    assert adapter.cache_dir == Path("/var/cache/meshplane")
    assert adapter.coordinator_token == LINK_TOKEN
    if tls:
        assert adapter.tls == TlsConfig(
            cert_path=TLS_DIR / "tls.crt",
            key_path=TLS_DIR / "tls.key",
            client_ca_path=TLS_DIR / "ca.crt",
        )
        assert adapter.health_port == 10900
    else:
        assert (adapter.tls, adapter.health_port) == (None, None)
    _assert_probes_ask(deployment, adapter.health_port or adapter.port)


def assert_coordinator_runs_as_deployed(
    deployment: dict[str, Any], args: argparse.Namespace, env: dict[str, str], transport: str
) -> None:
    """The coordinator's settings: discovery, store, link token and TLS, Kubernetes auth, probes."""
    tls = transport != "plaintext"
    settings = coordinator_settings(args, env)
    assert settings.discover_namespace == NAMESPACE
    assert settings.store.startswith("postgresql://")
    assert settings.port == 10100
    assert settings.allow_insecure_adapters is not tls
    assert settings.adapter_token == LINK_TOKEN
    assert settings.authn_kubernetes and settings.authz_kubernetes
    assert not settings.allow_anonymous
    if tls:
        assert settings.adapter_tls == ClientTls(
            ca_path=TLS_DIR / "ca.crt",
            cert_path=TLS_DIR / "tls.crt",
            key_path=TLS_DIR / "tls.key",
            server_name=f"mp-meshplane-adapter.{NAMESPACE}.svc",
        )
        assert settings.health_port == 10901
    else:
        assert (settings.adapter_tls, settings.health_port) == (None, None)
    if transport == "tls-coordinator":
        assert settings.tls == TlsConfig(
            cert_path=TLS_DIR / "tls.crt",
            key_path=TLS_DIR / "tls.key",
            client_ca_path=TLS_DIR / "ca.crt",
        )
    else:
        assert settings.tls is None
    _assert_probes_ask(deployment, settings.health_port or settings.port)


def assert_mounts_hold_the_named_files(deployment: dict[str, Any], tls: bool) -> None:
    """The files the settings name are the mounted Secrets'."""
    if tls:
        (mount,) = (m for m in container(deployment)["volumeMounts"] if m["name"] == "tls")
        assert Path(mount["mountPath"]) == TLS_DIR
    (link,) = (m for m in container(deployment)["volumeMounts"] if m["name"] == "link")
    assert Path(link["mountPath"]) == LINK_DIR


@pytest.mark.parametrize("transport", sorted(TLS_VALUES))
async def test_containers_run_meshplane_commands_the_parser_accepts(
    transport: str, tmp_path: Path
) -> None:
    values = {
        **_all_adapters(),
        **TLS_VALUES[transport],
        "coordinator": {"store": {"postgres": {"existingSecret": "db", "key": "url"}}},
    }
    tls = transport != "plaintext"
    objects = (await render(values)).objects
    parser = build_parser()
    token_file = tmp_path / "token"
    token_file.write_text(LINK_TOKEN)
    token_file.chmod(0o440)
    deployments = of_kind(objects, "Deployment")
    assert len(deployments) == 1 + len(meshes_with_rbac())
    for deployment in deployments:
        args = parser.parse_args(container(deployment)["args"])
        env = _environment(deployment, token_file)
        if args.command == "adapter":
            assert_adapter_runs_as_deployed(deployment, args, env, tls)
        else:
            assert args.command == "coordinator"
            assert_coordinator_runs_as_deployed(deployment, args, env, transport)
        assert_mounts_hold_the_named_files(deployment, tls)


def _assert_probes_ask(deployment: dict[str, Any], port: int) -> None:
    """Both probes ask ``port`` (the plaintext health port when the main one serves TLS)."""
    main = container(deployment)
    assert main["readinessProbe"]["grpc"]["port"] == port
    assert main["livenessProbe"]["grpc"]["port"] == port


@pytest.mark.parametrize("transport", ["plaintext", "tls"])
async def test_chart_installs_into_kubesim_with_the_apply_engine(
    kubesim: RunningSim, transport: str
) -> None:
    rendered = await render({**_all_adapters(), **TLS_VALUES[transport]})
    plan = ApplyPlan(
        release="meshplane",
        namespace=NAMESPACE,
        mesh="meshplane",
        objects=rendered.objects,
        wait_policy=WaitPolicy(timeout_seconds=30, poll_interval_seconds=0.1),
        create_namespaces=True,  # as `helm install --create-namespace`
    )
    progress: list[Progress] = []
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
        if transport == "tls":  # made beforehand (e.g. by cert-manager), as the pods mount it
            await session.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
            )
            await session.apply(_tls_secret())
        outcome = await Applier(session).install_or_upgrade(plan, progress.append)
        assert outcome.applied == len(rendered.objects)
        ready = {str(p.ref) for p in progress if p.kind is ProgressKind.READY}
        for deployment in of_kind(rendered.objects, "Deployment"):
            name = deployment["metadata"]["name"]
            assert any(name in ref and "Deployment" in ref for ref in ready), ready
            live = await session.get("apps/v1", "Deployment", name, NAMESPACE)
            assert live is not None and live["status"]["availableReplicas"] == 1

        # What discovery sees: every adapter Service is labelled, and its EndpointSlice
        # (written by kubesim's endpoint controller) has a ready pod on the port named grpc.
        services = await session.list("v1", "Service", NAMESPACE, f"{ADAPTER_LABEL}")
        assert sorted(s["metadata"]["labels"][ADAPTER_LABEL] for s in services) == sorted(
            meshes_with_rbac()
        )
        for service in services:
            name = service["metadata"]["name"]
            (grpc_port,) = service["spec"]["ports"][:1]
            slices = await session.list(
                "discovery.k8s.io/v1", "EndpointSlice", NAMESPACE, f"{SERVICE_NAME_LABEL}={name}"
            )
            assert len(slices) == 1, name
            assert slices[0]["ports"][0]["name"] == "grpc"
            assert slices[0]["ports"][0]["port"] == grpc_port["port"]
            assert [e["conditions"]["ready"] for e in slices[0]["endpoints"]] == [True]

        # The same engine removes it again.
        removed = await Applier(session).uninstall(
            "meshplane", NAMESPACE, progress.append, mesh="meshplane"
        )
        assert removed.deleted == len(rendered.objects)
        if transport == "tls":  # the Secret is not the chart's: it stays
            assert await session.get("v1", "Secret", TLS_SECRET, NAMESPACE) is not None


async def test_coordinator_discovers_the_charts_adapters(
    kubesim: RunningSim, tmp_path: Path
) -> None:
    rendered = await render({"coordinator": {"enabled": False}})
    service = find(rendered.objects, "Service", "mp-meshplane-adapter-istio")
    plan = ApplyPlan(
        release="meshplane",
        namespace=NAMESPACE,
        mesh="meshplane",
        objects=rendered.objects,
        wait_policy=WaitPolicy(timeout_seconds=30, poll_interval_seconds=0.1),
        create_namespaces=True,  # as `helm install --create-namespace`
    )
    async with (
        await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session,
        fakes(("istio", "in-test")) as (adapter,),
    ):
        await Applier(session).install_or_upgrade(plan, lambda _: None)
        # Pod IPs in kubesim are not routable; one more slice of the chart's Service points
        # at a real adapter on loopback, as an endpoint controller would for a reachable pod.
        await session.apply(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "adapter-istio-loopback",
                    "namespace": NAMESPACE,
                    "labels": {SERVICE_NAME_LABEL: service["metadata"]["name"]},
                },
                "addressType": "IPv4",
                "ports": [{"name": "grpc", "port": adapter.server.port, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
            }
        )
        settings = make_settings(
            tmp_path, discover_namespace=NAMESPACE, kubeconfig=kubesim.kubeconfig
        )
        async with coordinator(settings) as client:
            await client.wait_serving(adapter.address)
            replica = await client.replica(adapter.address)
            assert replica is not None
            assert replica.source == cpb.REGISTRATION_SOURCE_KUBERNETES
            listed = await client.stub.ListAdapters(cpb.ListAdaptersRequest(), timeout=5)
            assert [a.mesh for a in listed.adapters] == ["istio"]


def _tls_secret() -> dict[str, Any]:
    """A ``kubernetes.io/tls`` Secret with the keys the chart mounts (contents are not read)."""
    placeholder = base64.b64encode(b"-----BEGIN PLACEHOLDER-----\n").decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": TLS_SECRET, "namespace": NAMESPACE},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": placeholder, "tls.key": placeholder, "ca.crt": placeholder},
    }
