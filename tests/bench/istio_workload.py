"""The Istio demo install as a benchmark workload: charts, and the adapter's own rendering.

Benchmarks that compare the adapter with `kubectl apply --server-side` give kubectl the very
objects the adapter's planner renders for the same request (labelled as the adapter labels
them, the release namespace first), so both write the same thing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.release_labels import labelled
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.records import OperationRecord, OperationState
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import Planner
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.fixtures_paths import SHARED_FIXTURES

DEMO = {"profile": "demo"}
"""The install request's parameters (kubesim benchmarks)."""
MINIMAL = {"profile": "minimal"}
"""istiod and the CRDs only: what can become ready on the real API server here, where nothing
answers the sidecar injector webhook (the demo profile's gateways are injected Pods)."""


def istio_charts(tmp_path: Path) -> tuple[Path, Path, str]:
    """(chart repo dir, mirror dir, version): upstream when available, else the toy charts."""
    if (SHARED_FIXTURES / "README.md").is_file():
        return SHARED_FIXTURES / "charts" / "istio", SHARED_FIXTURES, "1.30.3"
    return package_toy_repo(tmp_path / "toy-charts"), TOY_MIRROR, "1.1.0"


def adapter_args(chart_url: str, manifests_url: str, cache: Path) -> list[str]:
    """`meshplane adapter istio` arguments for a benchmark: port 0, these sources, quiet."""
    return [
        "--port",
        "0",
        "--chart-repo",
        chart_url,
        "--manifests-url",
        manifests_url,
        "--cache-dir",
        str(cache),
        "--log-level",
        "warning",
    ]


def _record(version: str, parameters: dict[str, str]) -> OperationRecord:
    return OperationRecord(
        operation_id="bench",
        operation="install",
        mesh="istio",
        mesh_version=version,
        namespace="istio-system",
        delete=False,
        parameters=parameters,
        username="bench",
        state=OperationState.RUNNING,
        clusters=("default",),
        create_time=datetime.now(UTC),
    )


async def rendered_install(
    kubeconfig: Path, chart_url: str, cache: Path, version: str, parameters: dict[str, str]
) -> str:
    """The adapter's plan for install with ``parameters`` on this cluster as one YAML stream,
    namespace first."""
    spec = DECLARATION.operation("install")
    assert spec is not None
    planner = Planner(
        DECLARATION,
        charts=ChartRepository(chart_url, cache),
        manifests=ManifestLibrary(upstream_url=DECLARATION.manifests_url, cache_dir=cache),
    )
    async with await ClusterSession.connect(kubeconfig_path=kubeconfig) as session:
        plan = await planner.plan(spec, _record(version, parameters), session)
    namespace: KubeObject = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": plan.namespace},
    }
    objects = [namespace, *(labelled(obj, plan.release, plan.mesh) for obj in plan.objects)]
    return yaml.safe_dump_all(objects, sort_keys=False)
