"""Fixtures for the Istio adapter tests: a toy chart repository and mirror over loopback HTTP,
a simulated cluster, and a planner wired to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import Planner
from adapters.kit.plan.render_cache import RenderCache
from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]


@pytest.fixture
def toy_chart_server(tmp_path: Path, static_http_server: ServerFactory) -> StaticHttpServer:
    """The toy Istio charts at 1.0.0 and 1.1.0, served as a Helm repository."""
    return static_http_server(package_toy_repo(tmp_path / "charts"))


@pytest.fixture
def toy_mirror_server(static_http_server: ServerFactory) -> StaticHttpServer:
    """The toy manifests mirror (apps/, addons/)."""
    return static_http_server(TOY_MIRROR)


@pytest.fixture
def sim() -> Iterator[RunningSim]:
    """A fresh simulated cluster whose workloads become ready quickly."""
    with running_kubesim(SimConfig(ready_delay=0.05, bookmark_seconds=0.2)) as running:
        yield running


@pytest.fixture
async def session(sim: RunningSim) -> AsyncIterator[ClusterSession]:
    """A cluster session on the simulated cluster."""
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as connected:
        yield connected


@pytest.fixture
def planner(
    tmp_path: Path, toy_chart_server: StaticHttpServer, toy_mirror_server: StaticHttpServer
) -> Planner:
    """The Istio planner on the toy repository and mirror."""
    return Planner(
        DECLARATION,
        charts=ChartRepository(toy_chart_server.url, tmp_path / "cache", timeout=5.0),
        manifests=ManifestLibrary(
            upstream_url=DECLARATION.manifests_url,
            mirror_url=toy_mirror_server.url,
            cache_dir=tmp_path / "cache",
            timeout=5.0,
        ),
        render_cache=RenderCache(tmp_path / "rendered"),
    )
