"""The meshplane chart lints with Helm's engine and renders what platform teams expect."""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path
from typing import Any

import helm_python
import pytest

from adapters.istio.declaration import DECLARATION as ISTIO
from adapters.kit.plan.rendering import ChartRenderError, render_chart
from adapters.kit.process.settings import AdapterSettings, add_arguments, settings_from_args
from coordinator.server import servicer as coordinator_servicer
from meshplane.adapter.v1 import adapter_pb2
from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    committed_role,
    container,
    env_of,
    find,
    meshes_with_rbac,
    of_kind,
    render,
)

ADAPTER = "mp-meshplane-adapter-istio"
COORDINATOR = "mp-meshplane-coordinator"
# The names the servers report health under (what the readiness probes must ask for).
ADAPTER_SERVICE = adapter_pb2.DESCRIPTOR.services_by_name["MeshAdapterService"].full_name
COORDINATOR_SERVICE = coordinator_servicer.SERVICE_NAME

NON_DEFAULT: dict[str, Any] = {
    "image": {"repository": "registry.internal/meshplane", "tag": "9.9.9"},
    "commonLabels": {"team": "platform"},
    "coordinator": {
        "replicas": 2,
        "persistence": {"existingClaim": "meshplane-coordinator"},
        "store": {"postgres": {"existingSecret": "meshplane-db", "key": "dsn"}},
        "allowedClients": [
            {"namespaceSelector": {"matchLabels": {"meshplane.io/clients": "true"}}},
            {"podSelector": {"matchLabels": {"app": "console"}}},
        ],
    },
    "adapterDefaults": {
        "metricsPort": 9090,
        "metricsClients": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
    },
    "adapters": {
        "istio": {
            "chartRepo": "https://charts.internal/istio",
            "manifestsUrl": "https://mirror.internal/istio/",
            "mirror": {
                "enabled": True,
                "volume": {"persistentVolumeClaim": {"claimName": "meshplane-mirror"}},
            },
            "extraRules": [
                {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}
            ],
        }
    },
}


TLS: dict[str, Any] = {"tls": {"enabled": True, "secretName": "meshplane-tls"}}
SCRAPERS = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
METRICS_AND_POLICY: dict[str, Any] = {
    "coordinator": {"metricsPort": 9091, "metricsClients": SCRAPERS},
    "adapterDefaults": {
        "objectPolicy": {
            "protectedNamespaces": ["payments", "auth"],
            "allowProtectedNamespaces": True,
            "allowElevatedObjects": True,
        }
    },
}
TLS_DIR = "/etc/meshplane/tls"


def _lint(values: dict[str, Any] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Helm's lint (strict): (errors, findings of warning severity or worse)."""
    report = helm_python.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    # Severity 1 is informational (e.g. "icon is recommended"); 2+ are warnings and errors.
    return report["errors"], [m for m in report["messages"] if m["severity"] >= 2]


@pytest.mark.parametrize(
    "values",
    [
        None,
        NON_DEFAULT,
        {"adapters": {"istio": {"enabled": False}}},
        {"networkPolicy": {"enabled": False}},
        {"tls": {**TLS["tls"], "coordinator": {"enabled": True}}},
        {
            "meshery": {
                "enabled": True,
                "clients": [{"podSelector": {"matchLabels": {"app": "meshery"}}}],
                "allowedClusterServers": "kubernetes.default.svc",
            },
            "link": {"enabled": False},
        },
        METRICS_AND_POLICY,
    ],
    ids=[
        "default",
        "non-default",
        "coordinator-only",
        "no-network-policy",
        "tls",
        "meshery",
        "metrics-and-policy",
    ],
)
def test_chart_lints_clean(values: dict[str, Any] | None) -> None:
    assert _lint(values) == ([], [])


def test_lint_reports_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "meshplane"
    shutil.copytree(CHART, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nope.deeper }}\n")
    report = helm_python.lint(str(broken), strict=True)
    assert report["errors"] or any(m["severity"] >= 3 for m in report["messages"])


async def test_default_render_has_coordinator_and_istio_adapter() -> None:
    release = await render()
    kinds = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in release.objects)
    assert kinds == sorted(
        [
            f"ClusterRole/{NAMESPACE}-{ADAPTER}",
            f"ClusterRoleBinding/{NAMESPACE}-{ADAPTER}",
            f"ClusterRole/{NAMESPACE}-{COORDINATOR}",
            f"ClusterRoleBinding/{NAMESPACE}-{COORDINATOR}",
            "ClusterRole/meshplane-viewer",
            "ClusterRole/meshplane-operator",
            "ClusterRole/meshplane-admin",
            "Secret/mp-meshplane-link",
            f"Deployment/{ADAPTER}",
            f"Deployment/{COORDINATOR}",
            f"NetworkPolicy/{ADAPTER}",
            f"NetworkPolicy/{COORDINATOR}",
            f"PodDisruptionBudget/{ADAPTER}",
            f"PodDisruptionBudget/{COORDINATOR}",
            f"Role/{COORDINATOR}-discovery",
            f"RoleBinding/{COORDINATOR}-discovery",
            f"Service/{ADAPTER}",
            f"Service/{COORDINATOR}",
            f"ServiceAccount/{ADAPTER}",
            f"ServiceAccount/{COORDINATOR}",
        ]
    )
    assert release.hooks == ()


async def test_adapter_service_is_discoverable() -> None:
    release = await render()
    service = find(release.objects, "Service", ADAPTER)
    assert service["metadata"]["labels"]["meshplane.io/adapter"] == "istio"
    (port,) = service["spec"]["ports"]
    assert port == {
        "name": "grpc",
        "port": 10000,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "grpc",
    }
    deployment = find(release.objects, "Deployment", ADAPTER)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels[k] == v for k, v in service["spec"]["selector"].items())
    assert container(deployment)["args"] == ["adapter", "istio"]


@pytest.mark.parametrize(
    ("name", "service", "port"),
    [(ADAPTER, ADAPTER_SERVICE, 10000), (COORDINATOR, COORDINATOR_SERVICE, 10100)],
)
async def test_native_grpc_probes(name: str, service: str, port: int) -> None:
    main = container(find((await render()).objects, "Deployment", name))
    assert main["readinessProbe"]["grpc"] == {"port": port, "service": service}
    assert main["livenessProbe"]["grpc"] == {"port": port, "service": ""}
    assert {"name": "grpc", "containerPort": port, "protocol": "TCP"} in main["ports"]
    assert main["resources"]["requests"]["cpu"]
    assert main["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", [ADAPTER, COORDINATOR])
async def test_pods_are_locked_down(name: str) -> None:
    deployment = find((await render()).objects, "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["enableServiceLinks"] is False  # no MESHPLANE_COORDINATOR_PORT=tcp://…
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    main = container(deployment)
    security = main["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    # Every writable path is an emptyDir: state, caches and temp files.
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/var/lib/meshplane/state", "/var/cache/meshplane", "/tmp"):
        assert "emptyDir" in volumes[mounts[path]], path
    env = env_of(deployment)
    if name == ADAPTER:
        assert env["MESHPLANE_ADAPTER_STATE_DIR"] == "/var/lib/meshplane/state"
        assert env["MESHPLANE_ADAPTER_CACHE_DIR"] == "/var/cache/meshplane"
        assert env["MESHPLANE_ADAPTER_HOST"] == "0.0.0.0"
    else:
        assert env["MESHPLANE_COORDINATOR_DATA_DIR"] == "/var/lib/meshplane/state"
        assert env["MESHPLANE_COORDINATOR_HOST"] == "0.0.0.0"


async def test_network_policies_admit_only_the_coordinator_and_clients() -> None:
    objects = (await render()).objects
    adapter_policy = find(objects, "NetworkPolicy", ADAPTER)["spec"]
    coordinator = find(objects, "Deployment", COORDINATOR)
    coordinator_labels = coordinator["spec"]["template"]["metadata"]["labels"]
    (rule,) = adapter_policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}  # same namespace, coordinator pods only
    selector = peer["podSelector"]["matchLabels"]
    assert all(coordinator_labels[k] == v for k, v in selector.items())
    adapter_labels = find(objects, "Deployment", ADAPTER)["spec"]["template"]["metadata"]["labels"]
    assert any(adapter_labels.get(k) != v for k, v in selector.items())
    assert rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert adapter_policy["policyTypes"] == ["Ingress"]

    (client_rule,) = find(objects, "NetworkPolicy", COORDINATOR)["spec"]["ingress"]
    assert client_rule["from"] == [
        {"podSelector": {"matchLabels": {"meshplane.io/coordinator-client": "true"}}}
    ]


async def test_pod_disruption_budgets_select_their_pods() -> None:
    objects = (await render()).objects
    for name in (ADAPTER, COORDINATOR):
        budget = find(objects, "PodDisruptionBudget", name)["spec"]
        labels = find(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert budget["maxUnavailable"] == 1
        assert all(labels[k] == v for k, v in budget["selector"]["matchLabels"].items())


async def test_adapter_role_is_the_generated_one_bound_to_its_account() -> None:
    objects = (await render()).objects
    role = find(objects, "ClusterRole", f"{NAMESPACE}-{ADAPTER}")
    assert role["rules"] == committed_role("istio")["rules"]
    assert not any(
        "*" in rule.get("verbs", []) and "*" in rule.get("resources", []) for rule in role["rules"]
    )
    binding = find(objects, "ClusterRoleBinding", f"{NAMESPACE}-{ADAPTER}")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": ADAPTER, "namespace": NAMESPACE}
    ]
    deployment = find(objects, "Deployment", ADAPTER)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == ADAPTER


async def test_coordinator_discovers_within_its_namespace_only() -> None:
    objects = (await render()).objects
    role = find(objects, "Role", f"{COORDINATOR}-discovery")
    assert role["metadata"]["namespace"] == NAMESPACE
    granted = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    assert granted == {
        (group, resource, verb)
        for group, resource in (("", "services"), ("discovery.k8s.io", "endpointslices"))
        for verb in ("get", "list", "watch")
    }
    binding = find(objects, "RoleBinding", f"{COORDINATOR}-discovery")
    assert binding["subjects"][0]["name"] == COORDINATOR
    env = env_of(find(objects, "Deployment", COORDINATOR))
    assert env["MESHPLANE_COORDINATOR_DISCOVER_NAMESPACE"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert "MESHPLANE_COORDINATOR_STORE" not in env  # SQLite unless a Secret is named


async def test_non_default_values() -> None:
    objects = (await render(NON_DEFAULT)).objects
    coordinator = find(objects, "Deployment", COORDINATOR)
    assert coordinator["spec"]["replicas"] == 2
    assert container(coordinator)["image"] == "registry.internal/meshplane:9.9.9"
    assert env_of(coordinator)["MESHPLANE_COORDINATOR_STORE"] == {
        "secretKeyRef": {"name": "meshplane-db", "key": "dsn"}
    }
    (client_rule,) = find(objects, "NetworkPolicy", COORDINATOR)["spec"]["ingress"]
    assert client_rule["from"] == NON_DEFAULT["coordinator"]["allowedClients"]
    state = next(
        v for v in coordinator["spec"]["template"]["spec"]["volumes"] if v["name"] == "state"
    )
    assert state == {
        "name": "state",
        "persistentVolumeClaim": {"claimName": "meshplane-coordinator"},
    }

    adapter = find(objects, "Deployment", ADAPTER)
    env = env_of(adapter)
    assert env["MESHPLANE_ADAPTER_CHART_REPO"] == "https://charts.internal/istio"
    assert env["MESHPLANE_ADAPTER_MANIFESTS_URL"] == "https://mirror.internal/istio/"
    assert env["MESHPLANE_ADAPTER_MIRROR"] == "/var/lib/meshplane/mirror"
    assert env["MESHPLANE_ADAPTER_METRICS_PORT"] == "9090"
    pod = adapter["spec"]["template"]["spec"]
    mirror = next(v for v in pod["volumes"] if v["name"] == "mirror")
    assert mirror == {"name": "mirror", "persistentVolumeClaim": {"claimName": "meshplane-mirror"}}
    mount = next(m for m in container(adapter)["volumeMounts"] if m["name"] == "mirror")
    assert mount == {"name": "mirror", "mountPath": "/var/lib/meshplane/mirror", "readOnly": True}

    policy = find(objects, "NetworkPolicy", ADAPTER)["spec"]["ingress"]
    assert policy[1] == {
        "from": NON_DEFAULT["adapterDefaults"]["metricsClients"],
        "ports": [{"port": "metrics", "protocol": "TCP"}],
    }
    role = find(objects, "ClusterRole", f"{NAMESPACE}-{ADAPTER}")
    assert role["rules"][-1] == NON_DEFAULT["adapters"]["istio"]["extraRules"][0]
    assert role["rules"][:-1] == committed_role("istio")["rules"]
    for obj in objects:
        assert obj["metadata"]["labels"]["team"] == "platform"


async def test_coordinator_only() -> None:
    objects = (await render({"adapters": {"istio": {"enabled": False}}})).objects
    assert {o["metadata"]["name"] for o in objects} == {
        COORDINATOR,
        f"{COORDINATOR}-discovery",
        f"{NAMESPACE}-{COORDINATOR}",  # TokenReview and SubjectAccessReview
        "mp-meshplane-link",
        "meshplane-viewer",
        "meshplane-operator",
        "meshplane-admin",
    }
    assert not any("adapter" in o["metadata"]["name"] for o in of_kind(objects, "ClusterRole"))


async def test_adapters_only_without_network_policies() -> None:
    objects = (
        await render({"coordinator": {"enabled": False}, "networkPolicy": {"enabled": False}})
    ).objects
    assert [d["metadata"]["name"] for d in of_kind(objects, "Deployment")] == [ADAPTER]
    assert of_kind(objects, "NetworkPolicy") == []


async def test_mirror_without_a_volume_is_refused() -> None:
    values = {"adapters": {"istio": {"mirror": {"enabled": True}}}}
    with pytest.raises(ChartRenderError, match=r"adapters.istio.mirror.volume"):
        await render(values)


async def test_an_adapter_without_its_generated_role_is_refused() -> None:
    values = {"adapters": {"toy": {"enabled": True, "port": 10009, "mirror": {"enabled": False}}}}
    with pytest.raises(
        ChartRenderError, match=r"files/rbac-toy.yaml is missing.*meshplane rbac toy"
    ):
        await render(values)


async def test_readme_commands_name_what_the_chart_creates() -> None:
    """`deploy/README.md` installs release `meshplane` in namespace `meshplane`: the objects its
    commands name exist under those names."""
    readme = (CHART.parent.parent / "README.md").read_text(encoding="utf-8")
    assert "helm install meshplane deploy/helm/meshplane" in readme
    assert "--namespace meshplane" in readme
    rendered = await render_chart(CHART, release_name="meshplane", namespace="meshplane")
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    kinds = {"deployment": "Deployment", "svc": "Service"}
    for kind, name in re.findall(r"\b(deployment|svc)/([a-z0-9-]+)", readme):
        assert (kinds[kind], name) in names, (kind, name)
    for account in re.findall(r"system:serviceaccount:meshplane:([a-z0-9-]+)", readme):
        assert ("ServiceAccount", account) in names
    for path in re.findall(r"deploy/helm/meshplane/files/rbac-([a-z]+)\.yaml", readme):
        assert path in meshes_with_rbac()


def test_lint_reports_values_the_schema_does_not_know() -> None:
    errors, findings = _lint({"adapters": {"istio": {"prot": 10000}}})
    assert errors
    assert any("additional properties 'prot' not allowed" in m["error"] for m in findings)


async def test_render_refuses_misspelt_values() -> None:
    with pytest.raises(ChartRenderError, match=r"'replica' not allowed"):
        await render({"coordinator": {"replica": 2}})


async def test_several_coordinators_need_postgres() -> None:
    with pytest.raises(ChartRenderError, match=r"coordinator.replicas > 1 needs"):
        await render({"coordinator": {"replicas": 2}})


def _tls_volume(deployment: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Secret volume named tls and the container's mount of it."""
    pod = deployment["spec"]["template"]["spec"]
    (volume,) = (v for v in pod["volumes"] if v["name"] == "tls")
    (mount,) = (m for m in container(deployment)["volumeMounts"] if m["name"] == "tls")
    return volume, mount


async def test_tls_gives_adapters_mtls_from_the_mounted_secret_and_probes_the_health_port() -> None:
    objects = (await render(TLS)).objects
    adapter = find(objects, "Deployment", ADAPTER)
    volume, mount = _tls_volume(adapter)
    assert volume == {
        "name": "tls",
        "secret": {"secretName": "meshplane-tls", "defaultMode": 0o440},
    }
    assert mount == {"name": "tls", "mountPath": TLS_DIR, "readOnly": True}
    env = env_of(adapter)
    assert env["MESHPLANE_ADAPTER_TLS_CERT"] == f"{TLS_DIR}/tls.crt"
    assert env["MESHPLANE_ADAPTER_TLS_KEY"] == f"{TLS_DIR}/tls.key"
    assert env["MESHPLANE_ADAPTER_TLS_CLIENT_CA"] == f"{TLS_DIR}/ca.crt"
    assert env["MESHPLANE_ADAPTER_HEALTH_PORT"] == "10900"
    main = container(adapter)
    assert {"name": "health", "containerPort": 10900, "protocol": "TCP"} in main["ports"]
    assert main["readinessProbe"]["grpc"] == {"port": 10900, "service": ADAPTER_SERVICE}
    assert main["livenessProbe"]["grpc"] == {"port": 10900, "service": ""}
    # The Service (what discovery reads) still offers only the gRPC port.
    assert [p["name"] for p in find(objects, "Service", ADAPTER)["spec"]["ports"]] == ["grpc"]


async def test_tls_makes_the_coordinator_dial_adapters_with_mtls_only() -> None:
    # allowInsecureAdapters stays true in the values: tls.enabled overrides it.
    objects = (await render(TLS)).objects
    coordinator = find(objects, "Deployment", COORDINATOR)
    volume, mount = _tls_volume(coordinator)
    assert volume["secret"]["secretName"] == "meshplane-tls"
    assert mount["readOnly"] is True
    env = env_of(coordinator)
    assert env["MESHPLANE_COORDINATOR_ALLOW_INSECURE_ADAPTERS"] == "false"
    assert env["MESHPLANE_COORDINATOR_ADAPTER_TLS_CA"] == f"{TLS_DIR}/ca.crt"
    assert env["MESHPLANE_COORDINATOR_ADAPTER_TLS_CERT"] == f"{TLS_DIR}/tls.crt"
    assert env["MESHPLANE_COORDINATOR_ADAPTER_TLS_KEY"] == f"{TLS_DIR}/tls.key"
    # Adapters are dialled by pod IP: the name to verify is fixed by the chart.
    assert env["MESHPLANE_COORDINATOR_ADAPTER_TLS_SERVER_NAME"] == (
        f"mp-meshplane-adapter.{NAMESPACE}.svc"
    )
    assert env["MESHPLANE_COORDINATOR_HEALTH_PORT"] == "10901"
    assert "MESHPLANE_COORDINATOR_TLS_CERT" not in env  # its clients still talk plaintext
    main = container(coordinator)
    assert main["readinessProbe"]["grpc"] == {"port": 10901, "service": COORDINATOR_SERVICE}
    assert main["livenessProbe"]["grpc"] == {"port": 10901, "service": ""}

    named = await render({"tls": {**TLS["tls"], "serverName": "adapters.meshplane.internal"}})
    env = env_of(find(named.objects, "Deployment", COORDINATOR))
    assert env["MESHPLANE_COORDINATOR_ADAPTER_TLS_SERVER_NAME"] == "adapters.meshplane.internal"


async def test_tls_for_the_coordinators_clients() -> None:
    values = {"tls": {**TLS["tls"], "coordinator": {"enabled": True}}}
    env = env_of(find((await render(values)).objects, "Deployment", COORDINATOR))
    assert env["MESHPLANE_COORDINATOR_TLS_CERT"] == f"{TLS_DIR}/tls.crt"
    assert env["MESHPLANE_COORDINATOR_TLS_KEY"] == f"{TLS_DIR}/tls.key"
    assert env["MESHPLANE_COORDINATOR_TLS_CLIENT_CA"] == f"{TLS_DIR}/ca.crt"


async def test_tls_network_policies_admit_the_health_port_and_nothing_wider() -> None:
    objects = (await render(TLS)).objects
    plain = (await render()).objects
    for name in (ADAPTER, COORDINATOR):
        rules = find(objects, "NetworkPolicy", name)["spec"]["ingress"]
        # The gRPC rules are those of a plaintext install; one rule more admits the health port.
        assert rules[:-1] == find(plain, "NetworkPolicy", name)["spec"]["ingress"]
        assert rules[-1] == {"ports": [{"port": "health", "protocol": "TCP"}]}
    # A coordinator without allowed clients still admits the kubelet's probes and nobody else.
    closed = await render({**TLS, "coordinator": {"allowedClients": []}})
    assert find(closed.objects, "NetworkPolicy", COORDINATOR)["spec"]["ingress"] == [
        {"ports": [{"port": "health", "protocol": "TCP"}]}
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": {"enabled": True}}, r"tls.enabled needs tls.secretName"),
        ({"tls": {"coordinator": {"enabled": True}}}, r"tls.coordinator.enabled needs tls.enabled"),
        (
            {**TLS, "adapterDefaults": {"healthPort": 10000}},
            r"adapters.istio.port and adapterDefaults.healthPort are both 10000",
        ),
        (
            {**TLS, "coordinator": {"healthPort": 10100}},
            r"coordinator.port and coordinator.healthPort are both 10100",
        ),
        ({"tls": {"enable": True}}, r"'enable' not allowed"),
    ],
    ids=[
        "no-secret",
        "coordinator-without-tls",
        "adapter-port-clash",
        "coordinator-port-clash",
        "misspelt",
    ],
)
async def test_inconsistent_tls_values_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ChartRenderError, match=message):
        await render(values)


async def test_tls_off_renders_no_health_port() -> None:
    for deployment in of_kind((await render()).objects, "Deployment"):
        main = container(deployment)
        assert [p["name"] for p in main["ports"]] == ["grpc"]
        assert not any(e["name"].endswith("HEALTH_PORT") for e in main["env"])
        assert "tls" not in {m["name"] for m in main["volumeMounts"]}


MESHERY: dict[str, Any] = {
    "meshery": {
        "enabled": True,
        "clients": [{"namespaceSelector": {"matchLabels": {"name": "meshery"}}}],
        "allowedClusterServers": "kubernetes.default.svc,api.corp.example:6443",
    },
    "adapters": {"linkerd": {"enabled": True}},
    # Meshery calls adapters directly: it cannot present the coordinator link token
    "link": {"enabled": False},
}


async def test_meshery_clients_reach_every_adapter_which_accepts_their_kubeconfigs() -> None:
    objects = (await render(MESHERY)).objects
    plain = (await render()).objects
    for mesh in ("istio", "linkerd"):
        name = f"mp-meshplane-adapter-{mesh}"
        env = env_of(find(objects, "Deployment", name))
        assert env["MESHPLANE_ADAPTER_ALLOW_REQUEST_KUBECONFIGS"] == "true"
        assert env["MESHPLANE_ADAPTER_ALLOWED_CLUSTER_SERVERS"] == (
            "kubernetes.default.svc,api.corp.example:6443"
        )
        _coordinator_rule, meshery_rule = find(objects, "NetworkPolicy", name)["spec"]["ingress"]
        assert meshery_rule == {
            "from": MESHERY["meshery"]["clients"],
            "ports": [{"port": "grpc", "protocol": "TCP"}],
        }
    assert "MESHPLANE_ADAPTER_ALLOW_REQUEST_KUBECONFIGS" not in env_of(
        find(plain, "Deployment", ADAPTER)
    )
    assert len(find(plain, "NetworkPolicy", ADAPTER)["spec"]["ingress"]) == 1


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**MESHERY, **TLS}, r"meshery.enabled needs tls.enabled=false"),
        (
            {"meshery": {**MESHERY["meshery"], "allowedClusterServers": ""}},
            r"meshery.enabled needs meshery.allowedClusterServers",
        ),
        (
            {"meshery": {**MESHERY["meshery"], "clients": []}},
            r"meshery.enabled needs meshery.clients",
        ),
        ({"meshery": {"enable": True}}, r"'enable' not allowed"),
        ({**MESHERY, "link": {"enabled": True}}, r"meshery.enabled needs link.enabled=false"),
    ],
    ids=["with-tls", "no-servers", "no-clients", "misspelt", "with-link-token"],
)
async def test_inconsistent_meshery_values_are_refused(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ChartRenderError, match=message):
        await render(values)


async def test_coordinator_metrics_port_is_served_exposed_and_admitted_only_when_set() -> None:
    default = (await render()).objects
    coordinator = find(default, "Deployment", COORDINATOR)
    assert "MESHPLANE_COORDINATOR_METRICS_PORT" not in env_of(coordinator)
    assert [p["name"] for p in container(coordinator)["ports"]] == ["grpc"]
    assert [p["name"] for p in find(default, "Service", COORDINATOR)["spec"]["ports"]] == ["grpc"]

    objects = (await render(METRICS_AND_POLICY)).objects
    coordinator = find(objects, "Deployment", COORDINATOR)
    env = env_of(coordinator)
    # Scraped from other pods: it listens on every address, not the loopback default.
    assert (
        env["MESHPLANE_COORDINATOR_METRICS_PORT"],
        env["MESHPLANE_COORDINATOR_METRICS_HOST"],
    ) == (
        "9091",
        "0.0.0.0",
    )
    assert {"name": "metrics", "containerPort": 9091, "protocol": "TCP"} in container(coordinator)[
        "ports"
    ]
    service_ports = find(objects, "Service", COORDINATOR)["spec"]["ports"]
    assert {"name": "metrics", "port": 9091, "targetPort": "metrics", "protocol": "TCP"} in (
        service_ports
    )
    ingress = find(objects, "NetworkPolicy", COORDINATOR)["spec"]["ingress"]
    assert ingress[-1] == {"from": SCRAPERS, "ports": [{"port": "metrics", "protocol": "TCP"}]}
    # Only the scrapers reach it: the client rule still names the gRPC port alone.
    assert ingress[0]["ports"] == [{"port": "grpc", "protocol": "TCP"}]


async def test_adapter_object_policy_defaults_to_safe_and_takes_values() -> None:
    env = env_of(find((await render()).objects, "Deployment", ADAPTER))
    assert env["MESHPLANE_ADAPTER_ALLOW_PROTECTED_NAMESPACES"] == "false"
    assert env["MESHPLANE_ADAPTER_ALLOW_ELEVATED_OBJECTS"] == "false"
    assert "MESHPLANE_ADAPTER_PROTECTED_NAMESPACES" not in env

    env = env_of(find((await render(METRICS_AND_POLICY)).objects, "Deployment", ADAPTER))
    assert env["MESHPLANE_ADAPTER_PROTECTED_NAMESPACES"] == "payments,auth"
    assert env["MESHPLANE_ADAPTER_ALLOW_PROTECTED_NAMESPACES"] == "true"
    assert env["MESHPLANE_ADAPTER_ALLOW_ELEVATED_OBJECTS"] == "true"


async def _policy_settings(values: dict[str, Any] | None) -> AdapterSettings:
    """The adapter's own settings from the policy variables the chart renders for ``values``."""
    env = env_of(find((await render(values)).objects, "Deployment", ADAPTER))
    environ = {
        k: v for k, v in env.items() if isinstance(v, str) and ("PROTECTED" in k or "ELEVATED" in k)
    }
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return settings_from_args(parser.parse_args([]), ISTIO, environ)


async def test_the_adapter_reads_the_object_policy_the_chart_renders() -> None:
    """The rendered variables mean to the adapter what the values say (its own parsing)."""
    safe = await _policy_settings(None)
    assert safe.protected_namespaces == {"kube-system", "kube-public", "kube-node-lease"}
    assert not safe.allow_protected_namespaces and not safe.allow_elevated_objects
    settings = await _policy_settings(METRICS_AND_POLICY)
    assert {"payments", "auth", "kube-system"} <= settings.protected_namespaces
    assert settings.allow_protected_namespaces and settings.allow_elevated_objects
