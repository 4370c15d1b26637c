"""The real executor assembled from `AdapterSettings`: chart repository, manifests, render cache.

`meshplane adapter` (and `meshplane rbac`) build the executor here, so the run stage never sees
the process's settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.planner import Planner
from adapters.kit.plan.render_cache import RenderCache
from adapters.kit.process.settings import AdapterSettings
from adapters.kit.run.executor.chart_versions import ChartVersionCatalog, install_chart
from adapters.kit.run.executor.kit_executor import KitExecutor

__all__ = ["build_executor"]

log = structlog.get_logger(__name__)


def _cache_dir(settings_cache: Path | None, state_dir: Path | None, mesh: str) -> Path:
    if settings_cache is not None:
        return settings_cache
    if state_dir is not None:
        return state_dir / "cache"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meshplane" / mesh


def _mirror_chart_repo(mirror: Path, declaration: MeshDeclaration) -> Path:
    """The chart repository inside a mirror laid out like the shared fixtures.

    ``<mirror>/charts/<mesh>/``, else any ``<mirror>/charts/*/`` whose index lists the install
    chart, else ``<mirror>`` itself.
    """
    charts = mirror / "charts"
    if (charts / declaration.mesh / "index.yaml").is_file():
        return charts / declaration.mesh
    chart = install_chart(declaration)
    for index in sorted(charts.glob("*/index.yaml")):
        if f"\n  {chart}:" in index.read_text(encoding="utf-8", errors="replace"):
            return index.parent
    return mirror


def build_executor(
    declaration: MeshDeclaration,
    settings: AdapterSettings,
    *,
    on_kubernetes_retry: Callable[[], None] | None = None,
) -> tuple[KitExecutor, ChartVersionCatalog]:
    """The executor and version catalogue for ``declaration`` as `AdapterSettings` configure.

    Chart repository: ``--chart-repo`` when set, else the mirror's, else the declaration's.
    Manifests: ``--manifests-url`` when it differs from the declaration's (a mirror laid out as
    ``apps/``, ``addons/``), else ``--mirror``, else upstream at the mesh version.
    """
    cache = _cache_dir(settings.cache_dir, settings.state_dir, declaration.mesh)
    chart_url = settings.chart_repo or declaration.chart_repository
    mirror_url = ""
    if settings.manifests_url and settings.manifests_url != declaration.manifests_url:
        mirror_url = settings.manifests_url
    if settings.mirror_dir is not None:
        if chart_url == declaration.chart_repository:
            chart_url = str(_mirror_chart_repo(settings.mirror_dir, declaration))
        mirror_url = mirror_url or str(settings.mirror_dir)
    charts = ChartRepository(chart_url, cache / "charts")
    manifests = ManifestLibrary(
        upstream_url=declaration.manifests_url,
        mirror_url=mirror_url,
        cache_dir=cache / "manifests",
    )
    planner = Planner(
        declaration,
        charts=charts,
        manifests=manifests,
        render_cache=RenderCache(cache / "rendered"),
    )
    executor = KitExecutor(
        declaration,
        planner,
        kubeconfig=settings.kubeconfig,
        kube_context=settings.kube_context,
        on_kubernetes_retry=on_kubernetes_retry,
        object_policy=settings.object_policy,
    )
    log.info(
        "executor configured",
        mesh=declaration.mesh,
        chart_repository=chart_url,
        manifests=mirror_url or declaration.manifests_url,
        cache=str(cache),
    )
    return executor, ChartVersionCatalog(charts, install_chart(declaration))
