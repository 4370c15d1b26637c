"""A mesh's installable versions: its install chart's entries in the chart repository index."""

from __future__ import annotations

from datetime import datetime

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.sources import ChartSource
from adapters.kit.plan.chart_repository import ChartRepository, SemVer
from adapters.kit.run.seam import MeshVersionInfo

__all__ = ["ChartVersionCatalog", "install_chart"]

_UNSTABLE = SemVer(major=0, minor=0, patch=0, prerelease=("unknown",))


def install_chart(declaration: MeshDeclaration) -> str:
    """The chart whose versions are the mesh's versions: the install release's first chart."""
    for spec in declaration.operations:
        if spec.release_name == declaration.status_release:
            for source in spec.sources:
                if isinstance(source, ChartSource):
                    return source.chart
    raise ValueError(
        f"{declaration.mesh}: the status release {declaration.status_release!r} has no chart"
    )


class ChartVersionCatalog:
    """Installable mesh versions: the install chart's entries in the repository index."""

    def __init__(self, charts: ChartRepository, chart: str) -> None:
        self.charts = charts
        self.chart = chart

    async def versions(self) -> list[MeshVersionInfo]:
        """Newest first, stable before pre-releases (the index's own order)."""
        index = await self.charts.index()
        entries = index.charts.get(self.chart, ())
        return [
            MeshVersionInfo(
                version=entry.version,
                app_version=entry.app_version if entry.app_version != entry.version else "",
                prerelease=not (entry.semver or _UNSTABLE).is_stable,
                created=_timestamp(entry.created),
            )
            for entry in entries
        ]

    async def default_version(self) -> str:
        """The newest stable, non-deprecated version."""
        return (await self.charts.resolve(self.chart)).version


def _timestamp(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
