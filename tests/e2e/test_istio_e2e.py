"""The Istio adapter end to end: a subprocess driven over gRPC against kubesim (against the real
API server, where admission webhooks are real: tests/realkube/test_istio_admission.py).

Charts and manifests are served over loopback HTTP: the real upstream Istio charts and samples
from ../shared/fixtures (skipped when absent), and our own toy charts and mirror (always run).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.testing import (
    AdapterClient,
    AdapterProcess,
    EventCollector,
    managed_objects,
)
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.e2e.mesh_harness import Cluster
from tests.fixtures_paths import shared_fixtures
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]


@dataclass(frozen=True, kw_only=True)
class Sources:
    """Where charts and manifests come from, and the two versions to install then upgrade to."""

    charts: Path
    mirror: Path
    first: str
    second: str
    crds_first: int
    crds_second: int
    validators_fail_closed: bool = False
    """Upstream charts take the adapter's validationFailurePolicy (the toy ones hard-code it)."""


def shared_sources(_: Path) -> Sources:
    fixtures = shared_fixtures()
    return Sources(
        charts=fixtures / "charts" / "istio",
        mirror=fixtures,
        first="1.29.6",
        second="1.30.3",
        crds_first=14,
        crds_second=15,
        validators_fail_closed=True,
    )


def toy_sources(tmp_path: Path) -> Sources:
    return Sources(
        charts=package_toy_repo(tmp_path / "toy-charts"),
        mirror=TOY_MIRROR,
        first="1.0.0",
        second="1.1.0",
        crds_first=6,
        crds_second=6,
    )


@pytest.fixture(params=[shared_sources, toy_sources], ids=["upstream-charts", "toy-charts"])
def sources(request: pytest.FixtureRequest, tmp_path: Path) -> Sources:
    make: Callable[[Path], Sources] = request.param
    return make(tmp_path)


@pytest.fixture
def slow_sim() -> Iterator[RunningSim]:
    """Workloads take a second to become ready, so an install is long enough to interrupt."""
    with running_kubesim(SimConfig(ready_delay=1.0, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
def fast_sim() -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


class Harness:
    """A cluster + chart/manifest servers + the adapter subprocess, restartable on one state dir."""

    def __init__(
        self, sim: Cluster, tmp_path: Path, sources: Sources, serve: ServerFactory
    ) -> None:
        self.sim = sim
        self.sources = sources
        self.args = [
            "--port",
            "0",
            "--kubeconfig",
            str(sim.kubeconfig),
            "--chart-repo",
            serve(sources.charts).url,
            "--manifests-url",
            serve(sources.mirror).url,
            "--state-dir",
            str(tmp_path / "state"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--operation-timeout",
            "90",
        ]
        self.log = tmp_path / "adapter.log"
        self.process: AdapterProcess | None = None
        self.client: AdapterClient | None = None
        self._ids = itertools.count(1)

    async def start(self) -> AdapterClient:
        self.process = AdapterProcess(self.args, self.log).start()
        self.client = AdapterClient(self.process.address)
        await self.client.wait_serving()
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.process is not None:
            self.process.stop()

    def next_id(self, name: str) -> str:
        return f"e2e-{next(self._ids)}-{name}"

    async def replicas_and_pods(self, namespace: str) -> tuple[int, list[str]]:
        """Replicas the namespace's Deployments ask for, and the names of its pods."""
        async with await ClusterSession.connect(kubeconfig_path=self.sim.kubeconfig) as session:
            deployments = await session.list("apps/v1", "Deployment", namespace)
            pods = await session.list("v1", "Pod", namespace)
        wanted = sum(int(d["spec"].get("replicas", 1)) for d in deployments)
        return wanted, [str(p["metadata"]["name"]) for p in pods]

    async def validator_policies(self) -> dict[str, list[str]]:
        """Each ValidatingWebhookConfiguration's webhooks' failurePolicy, by its name."""
        async with await ClusterSession.connect(kubeconfig_path=self.sim.kubeconfig) as session:
            configs = await session.list(
                "admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"
            )
        return {
            c["metadata"]["name"]: [w.get("failurePolicy", "") for w in c.get("webhooks") or []]
            for c in configs
        }

    async def object(self, kind: str, name: str, namespace: str = "") -> dict[str, object] | None:
        api_version = {
            "Deployment": "apps/v1",
            "CustomResourceDefinition": "apiextensions.k8s.io/v1",
            "Gateway": "networking.istio.io/v1",
            "VirtualService": "networking.istio.io/v1",
            "Namespace": "v1",
        }[kind]
        async with await ClusterSession.connect(kubeconfig_path=self.sim.kubeconfig) as session:
            return await session.get(api_version, kind, name, namespace or None)


@pytest.fixture
async def harness(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sources: Sources,
    static_http_server: ServerFactory,
) -> AsyncIterator[Harness]:
    sim: Cluster = request.getfixturevalue(getattr(request, "param", "fast_sim"))
    running = Harness(sim, tmp_path, sources, static_http_server)
    try:
        yield running
    finally:
        await running.close()


def assert_consecutive(events: list[pb.Event]) -> None:
    sequences = [event.sequence for event in events]
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), sequences


def crds_of_istio(names: list[tuple[str, str, str]]) -> list[str]:
    return [n for kind, _, n in names if kind == "CustomResourceDefinition" and "istio.io" in n]


FAIL_CLOSED = {"istio-validator-istio-system": ["Fail"], "istiod-default-validator": ["Fail"]}


async def install_demo(harness: Harness, client: AdapterClient, events: EventCollector) -> None:
    """Install the first version's demo profile: CRDs established, istiod and gateways ready."""
    sources = harness.sources
    install = harness.next_id("install")
    done = await client.run(
        "install",
        operation_id=install,
        mesh_version=sources.first,
        parameters={"profile": "demo"},
    )
    assert done.cluster_results[0].objects_applied > 0
    owned = await managed_objects(harness.sim.kubeconfig)
    assert len(crds_of_istio(owned)) == sources.crds_first
    crd = await harness.object("CustomResourceDefinition", "virtualservices.networking.istio.io")
    assert crd is not None
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}  # type: ignore[index]
    assert conditions["Established"] == "True"
    istiod = await harness.object("Deployment", "istiod", "istio-system")
    assert istiod is not None and istiod["status"]["readyReplicas"] >= 1  # type: ignore[index]
    for gateway in ("istio-ingressgateway", "istio-egressgateway"):
        assert await harness.object("Deployment", gateway, "istio-system") is not None
    if sources.validators_fail_closed:
        assert await harness.validator_policies() == FAIL_CLOSED
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert (status.installed, status.version) == (True, sources.first)
    assert all(c.ready for c in status.components)
    mine = await events.settled(install)
    assert mine[0].summary.startswith("install accepted")
    assert mine[-1].operation_state == pb.OPERATION_STATE_SUCCEEDED
    assert_consecutive(events.events)


async def reinstall_and_upgrade(harness: Harness, client: AdapterClient) -> None:
    """A re-install applies nothing; the upgrade keeps the validators' policy (no flip-flop)."""
    sources = harness.sources
    owned = await managed_objects(harness.sim.kubeconfig)
    again = await client.run(
        "install",
        operation_id=harness.next_id("reinstall"),
        mesh_version=sources.first,
        parameters={"profile": "demo"},
    )
    assert again.cluster_results[0].objects_applied == 0
    assert again.cluster_results[0].objects_unchanged > 0
    assert await managed_objects(harness.sim.kubeconfig) == owned

    await client.run(
        "install",
        operation_id=harness.next_id("upgrade"),
        mesh_version=sources.second,
        parameters={"profile": "demo"},
    )
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert status.version == sources.second
    if sources.validators_fail_closed:
        assert await harness.validator_policies() == FAIL_CLOSED
    upgraded = await managed_objects(harness.sim.kubeconfig)
    assert len(crds_of_istio(upgraded)) == sources.crds_second


async def bookinfo_with_a_canary(harness: Harness, client: AdapterClient) -> None:
    await client.run("bookinfo", operation_id=harness.next_id("bookinfo"))
    assert await harness.object("Gateway", "bookinfo-gateway", "default") is not None
    await client.run("bookinfo-route-v1", operation_id=harness.next_id("route"))
    canary = {"reviews-v1-weight": "50", "reviews-v2-weight": "0", "reviews-v3-weight": "50"}
    await client.run("bookinfo-canary", operation_id=harness.next_id("canary"), parameters=canary)
    reviews = await harness.object("VirtualService", "reviews", "default")
    assert reviews is not None
    weights = [r["weight"] for r in reviews["spec"]["http"][0]["route"]]  # type: ignore[index]
    assert weights == [50, 50]


async def validate_passes(harness: Harness, client: AdapterClient, events: EventCollector) -> None:
    validate = harness.next_id("validate")
    await client.run("validate", operation_id=validate)
    findings = await events.settled(validate)
    summary = next(e for e in findings if e.component == "summary")
    assert "0 errors" in summary.summary
    assert any("CRDs established" in e.summary for e in findings)
    assert any("istiod is ready" in e.summary for e in findings)


async def uninstall_leaves_nothing(
    harness: Harness, client: AdapterClient, events: EventCollector
) -> None:
    for operation in ("bookinfo-canary", "bookinfo-route-v1", "bookinfo", "install"):
        await client.run(
            operation,
            operation_id=harness.next_id(f"rm-{operation}"),
            delete=True,
            parameters={"purge-crds": "true"},
        )
    assert await managed_objects(harness.sim.kubeconfig) == []
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert not status.installed
    assert_consecutive(events.events)


@pytest.mark.timeout(90)
async def test_install_upgrade_samples_validate_uninstall(harness: Harness) -> None:
    client = await harness.start()
    events = EventCollector(client).start()
    try:
        await install_demo(harness, client, events)
        await reinstall_and_upgrade(harness, client)
        await bookinfo_with_a_canary(harness, client)
        await validate_passes(harness, client, events)
        await uninstall_leaves_nothing(harness, client, events)
    finally:
        await events.stop()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("harness", ["slow_sim"], indirect=True)
async def test_killed_mid_install_resumes_without_duplicates(harness: Harness) -> None:
    operation_id = "e2e-install-interrupted"
    version = harness.sources.second
    last_sequence = await kill_once_crds_are_ready(harness, operation_id, version)

    client = await harness.start()
    before = await client.stub.GetOperation(pb.GetOperationRequest(operation_id=operation_id))
    assert before.operation.state == pb.OPERATION_STATE_INTERRUPTED
    resumed_events = EventCollector(client, after_sequence=last_sequence).start()
    try:
        response = await client.apply(
            "install",
            operation_id=operation_id,
            mesh_version=version,
            parameters={"profile": "demo"},
        )
        assert response.operation.attempt == 2
        done = await client.wait(operation_id)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        assert done.attempt == 2
        await assert_one_whole_install(harness, client, version)
        resumed = await resumed_events.settled(
            operation_id, frozenset({pb.OPERATION_STATE_SUCCEEDED})
        )
        summaries = [e.summary for e in resumed]
        assert "install interrupted" in summaries  # recorded by the restarted adapter
        assert any(text.startswith("install resumed, attempt 2") for text in summaries)
        assert resumed[-1].operation_state == pb.OPERATION_STATE_SUCCEEDED
        assert_consecutive(resumed_events.events)
    finally:
        await resumed_events.stop()


async def kill_once_crds_are_ready(harness: Harness, operation_id: str, version: str) -> int:
    """Start an install, kill the adapter once its CRDs are ready; the last event's sequence."""
    client = await harness.start()
    events = EventCollector(client).start()
    await client.apply(
        "install",
        operation_id=operation_id,
        mesh_version=version,
        parameters={"profile": "demo"},
    )
    await events.wait_for(
        lambda e: (
            e.operation_id == operation_id
            and e.component.startswith("CustomResourceDefinition")
            and e.summary.endswith(" ready")
        )
    )
    assert harness.process is not None
    harness.process.kill()
    await events.stop()
    await client.close()
    harness.client = None
    return events.events[-1].sequence


async def assert_one_whole_install(harness: Harness, client: AdapterClient, version: str) -> None:
    """One inventory, and the resumed run re-created nothing: one pod per replica."""
    owned = await managed_objects(harness.sim.kubeconfig)
    names = [name for kind, _, name in owned if kind == "Deployment"]
    assert sorted(names) == ["istio-egressgateway", "istio-ingressgateway", "istiod"]
    assert [name for kind, _, name in owned if kind == "Secret"] == [
        "meshplane-release-istio-install"
    ]
    replicas, pods = await harness.replicas_and_pods("istio-system")
    assert len(pods) == len(set(pods)) == replicas
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert status.installed and status.version == version
    assert status.components and all(c.ready for c in status.components)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sources", [toy_sources], ids=["toy-charts"], indirect=True)
async def test_label_namespace_never_creates_the_namespace_unless_asked(harness: Harness) -> None:
    """Issue 15: `label-namespace --namespace nope` created nope; now it fails naming the flag."""
    client = await harness.start()
    refused = harness.next_id("label-nope")
    await client.apply("label-namespace", operation_id=refused, namespace="nope")
    done = await client.wait(refused)
    assert done.state == pb.OPERATION_STATE_FAILED
    assert done.error.code == "FAILED_PRECONDITION"
    assert done.error.message.startswith(
        "namespace 'nope' does not exist; pass --create-namespace"
    ), done.error.message
    assert await harness.object("Namespace", "nope") is None

    await client.run(
        "label-namespace",
        operation_id=harness.next_id("label-nope-asked"),
        namespace="nope",
        parameters={"create-namespace": "true"},
    )
    created = await harness.object("Namespace", "nope")
    assert created is not None
    assert created["metadata"]["labels"]["istio-injection"] == "enabled"  # type: ignore[index]


USER_ROUTE = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "users-route", "namespace": "default"},
    "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]},
}
"""A VirtualService a user wrote with kubectl: not meshplane's, but it lives in Istio's CRD."""


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sources", [toy_sources], ids=["toy-charts"], indirect=True)
async def test_a_users_virtual_service_survives_uninstall_unless_forced(harness: Harness) -> None:
    """Issue 15: `install --delete` deleted every Istio CRD and every user VirtualService."""
    client = await harness.start()
    await client.run(
        "install", operation_id=harness.next_id("install"), mesh_version=harness.sources.first
    )
    async with await ClusterSession.connect(kubeconfig_path=harness.sim.kubeconfig) as session:
        await session.apply(USER_ROUTE)
    crds = crds_of_istio(await managed_objects(harness.sim.kubeconfig))
    assert len(crds) == harness.sources.crds_first

    # Asked to purge while a user's VirtualService exists: refused, nothing touched.
    refused_id = harness.next_id("purge")
    await client.apply(
        "install", operation_id=refused_id, delete=True, parameters={"purge-crds": "true"}
    )
    refused = await client.wait(refused_id)
    assert refused.state == pb.OPERATION_STATE_FAILED
    assert refused.error.code == "FAILED_PRECONDITION"
    assert refused.error.message == (
        "1 VirtualService (networking.istio.io) object in 1 namespace still exists; delete them "
        "or pass --param purge-crds=force"
    )
    assert await harness.object("Deployment", "istiod", "istio-system") is not None
    status = await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())
    assert status.installed

    # The default uninstall: everything but the CRDs goes, and the route survives.
    done = await client.run("install", operation_id=harness.next_id("uninstall"), delete=True)
    assert f"kept {len(crds)} CustomResourceDefinitions" in done.cluster_results[0].summary
    assert crds_of_istio(await managed_objects(harness.sim.kubeconfig)) == crds
    assert [kind for kind, _, _ in await managed_objects(harness.sim.kubeconfig)] == [
        "CustomResourceDefinition"
    ] * len(crds)
    assert await harness.object("VirtualService", "users-route", "default") is not None
    assert not (await client.stub.GetMeshStatus(pb.GetMeshStatusRequest())).installed

    # Still refused without force; forced, the CRDs go and the route with them.
    again = harness.next_id("purge-again")
    await client.apply(
        "install", operation_id=again, delete=True, parameters={"purge-crds": "true"}
    )
    assert (await client.wait(again)).error.code == "FAILED_PRECONDITION"
    forced = await client.run(
        "install",
        operation_id=harness.next_id("force"),
        delete=True,
        parameters={"purge-crds": "force"},
    )
    assert forced.cluster_results[0].objects_deleted == len(crds)
    assert await managed_objects(harness.sim.kubeconfig) == []
    assert await harness.object("VirtualService", "users-route", "default") is None
