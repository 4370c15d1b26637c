"""Least privilege, proven on the real API server (issue 14).

For each mesh: `meshplane rbac MESH` (the real CLI, reading the same chart repository and
manifests the adapter uses) prints a ClusterRole; a ServiceAccount is bound to it and to nothing
else; the adapter process runs with a kubeconfig holding only that ServiceAccount's token
(TokenRequest) and its whole catalogue is driven through gRPC: install, no-op re-install,
upgrade, every other operation applied and deleted (sample apps, configuration, namespace
labels, custom YAML), validate, uninstall leaving nothing. Then the role loses one grant and the
operation that needs it fails naming the permission as the API server reported it (verb,
resource, API group, namespace) and the command that prints the role.

The checks themselves (what objects exist) use the admin kubeconfig.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.consul.declaration import DECLARATION as CONSUL
from adapters.istio.declaration import DECLARATION as ISTIO
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.testing import MESHPLANE, AdapterClient, EventCollector, managed_objects
from adapters.linkerd.declaration import DECLARATION as LINKERD
from meshplane.adapter.v1 import adapter_pb2 as pb
from realkube.control_plane import ControlPlane
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.adapters.toy_repository import package_toy_repository, toy_mirror
from tests.e2e.mesh_harness import MeshHarness, Sources, exercise_every_operation
from tests.fixtures_paths import SHARED_FIXTURES
from tests.plugins.realkube import RealCluster
from tests.plugins.static_http import StaticHttpServer
from tests.realkube.service_accounts import (
    apply_objects,
    bind_cluster_role,
    can_i,
    kubectl,
    service_account,
    token_for,
    token_kubeconfig,
)

pytestmark = pytest.mark.realkube

ADAPTERS_NAMESPACE = "meshplane-adapters"


@dataclass(frozen=True, kw_only=True)
class MeshCase:
    """One mesh: its declaration, its charts (upstream and toy), what its install takes."""

    declaration: MeshDeclaration
    upstream: Callable[[], Sources]
    toy: Callable[[Path], Sources]
    install: dict[str, str]

    @property
    def mesh(self) -> str:
        return self.declaration.mesh


def _upstream(folder: str, older: str, newer: str) -> Callable[[], Sources]:
    def sources() -> Sources:
        return Sources(
            charts=SHARED_FIXTURES / "charts" / folder,
            mirror=SHARED_FIXTURES,
            older=(older, ""),
            newer=(newer, ""),
        )

    return sources


def _toy(mesh: str, app_versions: tuple[str, str] = ("", "")) -> Callable[[Path], Sources]:
    """Our own charts (as the e2e tests package them) when ../shared/fixtures is absent."""

    def sources(tmp_path: Path) -> Sources:
        older, newer = ("1.0.0", app_versions[0]), ("1.1.0", app_versions[1])
        if mesh == "istio":
            repo = package_toy_repo(tmp_path / "charts", (older[0], newer[0]))
            return Sources(charts=repo, mirror=TOY_MIRROR, older=older, newer=newer)
        return Sources(
            charts=package_toy_repository(mesh, tmp_path / "charts", dict([older, newer])),
            mirror=toy_mirror(mesh),
            older=older,
            newer=newer,
        )

    return sources


CASES = {
    "linkerd": MeshCase(
        declaration=LINKERD,
        upstream=_upstream("linkerd", "2026.7.2", "2026.8.3"),
        toy=_toy("linkerd", ("edge-1.0.0", "edge-1.1.0")),
        install={},
    ),
    "consul": MeshCase(
        declaration=CONSUL,
        upstream=_upstream("hashicorp", "1.8.16", "1.9.11"),
        toy=_toy("consul", ("1.20.0", "1.21.0")),
        # One server: the chart wants one per Node (docs/realkube.md), and there are two.
        install={"server-replicas": "1"},
    ),
    "istio": MeshCase(
        declaration=ISTIO,
        upstream=_upstream("istio", "1.29.6", "1.30.3"),
        toy=_toy("istio"),
        # The gateways of the other profiles are injected by istiod, which cannot run here:
        # after the first install their Pods cannot be created (test_istio_admission.py).
        install={"profile": "minimal"},
    ),
}


def upstream_present() -> bool:
    """Whether ../shared/fixtures is here (else our own toy charts are used)."""
    return (SHARED_FIXTURES / "README.md").is_file()


class LeastPrivilegeAdapter(MeshHarness):
    """A mesh harness whose adapter process reaches the cluster with ``adapter_kubeconfig``
    (the ServiceAccount's token); the harness's own checks keep the admin kubeconfig."""

    def __init__(self, *args: Any, adapter_kubeconfig: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        at = self.args.index("--kubeconfig") + 1
        self.args[at] = str(adapter_kubeconfig)


@dataclass(kw_only=True)
class Bench:
    """Everything one test needs: the adapter with least privilege, the role and its source."""

    case: MeshCase
    sources: Sources
    harness: LeastPrivilegeAdapter
    role: dict[str, Any]
    plane: ControlPlane
    adapter_kubeconfig: Path

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        """Replace the ClusterRole's rules (the admin's `kubectl apply`)."""
        self.role["rules"] = rules
        apply_objects(self.plane, self.role)


def generated_role(mesh: str, charts_url: str, manifests_url: str, cache: Path) -> dict[str, Any]:
    """What `meshplane rbac MESH` prints for this chart repository and manifests."""
    done = subprocess.run(
        [
            str(MESHPLANE),
            "rbac",
            mesh,
            "--chart-repo",
            charts_url,
            "--manifests-url",
            manifests_url,
            "--cache-dir",
            str(cache),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    role: dict[str, Any] = yaml.safe_load(done.stdout)
    assert role["kind"] == "ClusterRole" and role["metadata"]["name"] == f"meshplane-adapter-{mesh}"
    return role


@pytest.fixture
async def bench(
    request: pytest.FixtureRequest,
    real_cluster: RealCluster,
    real_kube: ControlPlane,
    tmp_path: Path,
    static_http_server: Callable[[Path], StaticHttpServer],
) -> AsyncIterator[Bench]:
    """The generated ClusterRole bound to ServiceAccount meshplane-adapters/adapter-MESH, and
    the adapter process running with that ServiceAccount's token."""
    case = CASES[request.param]
    sources = case.upstream() if upstream_present() else case.toy(tmp_path)
    charts = static_http_server(sources.charts)
    manifests = static_http_server(sources.mirror)
    role = generated_role(case.mesh, charts.url, manifests.url, tmp_path / "rbac-cache")
    account = f"adapter-{case.mesh}"
    service_account(real_kube, ADAPTERS_NAMESPACE, account)
    apply_objects(real_kube, role)
    binding = bind_cluster_role(
        real_kube, role["metadata"]["name"], subject=(ADAPTERS_NAMESPACE, account)
    )
    token = token_for(real_kube, ADAPTERS_NAMESPACE, account)
    adapter_kubeconfig = token_kubeconfig(real_kube, token, tmp_path / "adapter.kubeconfig")
    harness = LeastPrivilegeAdapter(
        case.mesh,
        real_cluster,
        tmp_path,
        charts=charts,
        manifests=manifests,
        adapter_kubeconfig=adapter_kubeconfig,
    )
    try:
        yield Bench(
            case=case,
            sources=sources,
            harness=harness,
            role=role,
            plane=real_kube,
            adapter_kubeconfig=adapter_kubeconfig,
        )
    finally:
        await harness.close()
        kubectl(real_kube, "delete", "clusterrolebinding", binding, "--ignore-not-found")
        kubectl(real_kube, "delete", "clusterrole", role["metadata"]["name"], "--ignore-not-found")


async def fail_closed_webhooks_opened(bench: Bench) -> None:
    """Istio only: no webhook can have a backend in the loopback-only namespace, and istiod's
    fail closed (tests/realkube/test_istio_admission.py proves the adapter reports that). To
    drive the rest of the catalogue, the admin sets them to `Ignore`, standing in for a
    reachable istiod; this touches no permission of the adapter."""
    plane = bench.plane
    for kind in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
        names = kubectl(plane, "get", kind, "-l", "app.kubernetes.io/managed-by=meshplane",
                        "-o", "name").split()  # fmt: skip
        for name in names:
            webhooks = yaml.safe_load(kubectl(plane, "get", name, "-o", "yaml"))["webhooks"]
            patch = [
                {"op": "replace", "path": f"/webhooks/{i}/failurePolicy", "value": "Ignore"}
                for i in range(len(webhooks))
            ]
            kubectl(plane, "patch", name, "--type=json", "-p", yaml.safe_dump(patch))


@pytest.mark.timeout(1500)
@pytest.mark.parametrize("bench", list(CASES), indirect=True)
async def test_the_generated_role_is_enough_for_the_whole_catalogue(bench: Bench) -> None:
    harness, case, sources = bench.harness, bench.case, bench.sources
    client = await harness.start()
    older, newer = sources.older[0], sources.newer[0]
    install = dict(case.install)

    await client.run(
        "install", operation_id=harness.next_id("install"), mesh_version=older, parameters=install
    )
    owned = await managed_objects(harness.sim.kubeconfig)
    again = await client.run(
        "install", operation_id=harness.next_id("reinstall"), mesh_version=older, parameters=install
    )
    assert again.cluster_results[0].objects_applied == 0
    assert await managed_objects(harness.sim.kubeconfig) == owned
    await client.run(
        "install", operation_id=harness.next_id("upgrade"), mesh_version=newer, parameters=install
    )
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert (status.installed, status.version) == (True, newer)
    if case.mesh == "istio":
        await fail_closed_webhooks_opened(bench)

    exercised = await exercise_every_operation(harness, case.declaration)
    deletable = [
        s.id for s in case.declaration.operations if s.supports_delete and s.id != "install"
    ]
    assert exercised == deletable
    await client.run("validate", operation_id=harness.next_id("validate"))
    await uninstall_leaves_nothing(harness, client)
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert not status.installed


def without(
    rules: list[dict[str, Any]], *, group: str, resource: str = "", verb: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``rules`` with one grant taken out of the first rule holding it: ``resource`` of API
    ``group`` (every verb), or ``verb`` on that rule's resources. Returns (rules, the rule as
    it was)."""
    for index, rule in enumerate(rules):
        if rule.get("resourceNames") or group not in rule.get("apiGroups", []):
            continue
        changed = dict(rule)
        if resource and resource in rule.get("resources", []):
            changed["resources"] = [r for r in rule["resources"] if r != resource]
        elif verb and not resource and verb in rule.get("verbs", []) and len(rule["verbs"]) > 1:
            changed["verbs"] = [v for v in rule["verbs"] if v != verb]
        else:
            continue
        kept = [
            *rules[:index],
            *([changed] if changed.get("resources") else []),
            *rules[index + 1 :],
        ]
        return kept, rule
    raise AssertionError(f"no rule grants {verb or resource} in API group {group!r}")


async def uninstall_leaves_nothing(harness: MeshHarness, client: AdapterClient) -> None:
    """Uninstall, CRDs too: no meshplane-managed object is left."""
    await client.run(
        "install",
        operation_id=harness.next_id("uninstall"),
        delete=True,
        parameters={"purge-crds": "true"},
    )
    assert await managed_objects(harness.sim.kubeconfig) == []


async def refused(bench: Bench, operation: str, **kwargs: Any) -> pb.Operation:
    """Run ``operation`` expecting it to fail; the failed operation."""
    client = bench.harness.client
    assert client is not None
    operation_id = bench.harness.next_id(operation)
    await client.apply(operation, operation_id=operation_id, **kwargs)
    done = await client.wait(operation_id)
    assert done.state == pb.OPERATION_STATE_FAILED, (operation, done.state)
    return done


async def eventually_denied(bench: Bench, verb: str, resource: str, namespace: str) -> None:
    """Until the adapter's identity may no longer ``verb`` ``resource`` (RBAC's informers see
    a role's change within moments; `kubectl auth can-i`, a SelfSubjectAccessReview, asks)."""
    async with asyncio.timeout(60):
        while True:
            if not await asyncio.to_thread(
                can_i, bench.plane, bench.adapter_kubeconfig, verb, resource, namespace
            ):
                return
            await asyncio.sleep(0.2)


def remedy_of(bench: Bench) -> str:
    return f"`meshplane rbac {bench.case.mesh}` prints the ClusterRole this adapter needs"


async def assert_escalation_refusal_lists_what_is_missing(
    bench: Bench, complete: list[dict[str, Any]]
) -> None:
    """A permission only the mesh's own roles grant (the adapter never uses it): creating
    such a role is refused by RBAC's escalation check, which lists what is missing."""
    rules, rule = without(complete, group="", verb="watch")
    bench.set_rules(rules)
    await eventually_denied(bench, "watch", rule["resources"][0], "linkerd")
    failed = await refused(bench, "install", mesh_version=bench.sources.older[0])
    assert failed.error.code == "KUBE_FORBIDDEN", failed.error
    assert "a role may grant only permissions its creator holds" in failed.error.message
    assert 'APIGroups:[""]' in failed.error.message
    assert 'Verbs:["watch"]' in failed.error.message
    assert "escalation" in failed.error.probable_cause
    assert remedy_of(bench) in failed.error.suggested_remediation


async def assert_refused_deployments_are_named(
    bench: Bench, complete: list[dict[str, Any]], events: EventCollector
) -> None:
    """Deployments taken away: the install's first Deployment is refused, naming the verb,
    resource, group and namespace as the API server does, and the command to fix it."""
    account = f"system:serviceaccount:{ADAPTERS_NAMESPACE}:adapter-{bench.case.mesh}"
    rules, _ = without(complete, group="apps", resource="deployments")
    bench.set_rules(rules)
    await eventually_denied(bench, "patch", "deployments.apps", "linkerd")
    failed = await refused(bench, "install", mesh_version=bench.sources.older[0])
    assert failed.error.code == "KUBE_FORBIDDEN", failed.error
    # (the kit lists the release's Deployments first when an earlier attempt left some
    # of the release in place, else it applies: either verb is the one refused)
    said = re.search(
        f'User "{account}" cannot (list|patch) resource "deployments" in API group "apps" '
        'in the namespace "linkerd"',
        failed.error.message,
    )
    assert said is not None, failed.error.message
    verb = said[1]
    assert f'lacks the permission {verb} on deployments in API group "apps"' in (
        failed.error.message
    )
    assert f'verbs ["{verb}"] on resources ["deployments"] in apiGroups ["apps"]' in (
        failed.error.suggested_remediation
    )
    assert remedy_of(bench) in failed.error.suggested_remediation
    await events.wait_for(
        lambda e: e.operation_id == failed.operation_id and said[0] in e.error.message
    )


async def install_and_uninstall_with_the_whole_role(
    bench: Bench, complete: list[dict[str, Any]], client: AdapterClient
) -> None:
    """The whole role again: the install completes and the uninstall leaves nothing."""
    harness = bench.harness
    bench.set_rules(complete)
    await client.run(
        "install", operation_id=harness.next_id("install"), mesh_version=bench.sources.older[0]
    )
    await uninstall_leaves_nothing(harness, client)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("bench", ["linkerd"], indirect=True)
async def test_a_missing_permission_is_named_as_the_api_server_reports_it(bench: Bench) -> None:
    client = await bench.harness.start()
    complete = list(bench.role["rules"])
    events = EventCollector(client).start()
    try:
        await assert_escalation_refusal_lists_what_is_missing(bench, complete)
        await assert_refused_deployments_are_named(bench, complete, events)
        await install_and_uninstall_with_the_whole_role(bench, complete, client)
    finally:
        await events.stop()
