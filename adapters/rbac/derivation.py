"""Deriving an adapter's `Requirements`: everything its declaration may apply, read or check.

`derive` renders every chart version the repository offers, for every combination of the
operations' enumerated parameters, and ignores `when` conditions (the union is what the adapter
may ever apply). Reads made by values builders, conditions and validate checks are recorded
through a `RecordingReader` that answers every question with one sample object.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from adapters.kit.declare import sources
from adapters.kit.declare.checks import CheckContext
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec, Ownership
from adapters.kit.declare.sources import PlanContext
from adapters.kit.model.objects import KubeObject
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.rendering import render_chart
from adapters.rbac.collecting import (
    FIELDS_VERBS,
    HOOK_VERBS,
    OWNED_VERBS,
    NeedCollector,
)
from adapters.rbac.recording_reader import RecordingReader
from adapters.rbac.requirements import Requirements

__all__ = ["derive", "derive_for_mesh", "parameter_sets"]

log = structlog.get_logger(__name__)


def parameter_sets(spec: OperationSpec) -> list[dict[str, str]]:
    """Every combination of the parameters that list their allowed values; others default."""
    base = {p.name: p.default for p in spec.parameters if p.default}
    enumerated = [p for p in spec.parameters if p.allowed]
    combos: list[dict[str, str]] = []
    for values in itertools.product(*(p.allowed for p in enumerated)):
        chosen = dict(base)
        chosen.update({p.name: v for p, v in zip(enumerated, values, strict=True)})
        combos.append(chosen)
    return combos or [base]


class _Renders:
    """Renders each (chart, version, release, namespace, values) once."""

    def __init__(self, charts: ChartRepository) -> None:
        self._charts = charts
        self._done: dict[str, tuple[list[KubeObject], list[KubeObject]]] = {}

    async def render(
        self, source: sources.ChartSource, ctx: PlanContext
    ) -> tuple[list[KubeObject], list[KubeObject]]:
        """The chart's objects and hooks as ``source`` renders them for ``ctx``."""
        values = dict(await source.values(ctx)) if source.values is not None else {}
        namespace = source.namespace or ctx.namespace
        key = json.dumps(
            [source.chart, ctx.mesh_version, source.release, namespace, values], sort_keys=True
        )
        if key not in self._done:
            entry = await self._charts.resolve(source.chart, ctx.mesh_version)
            archive = await self._charts.fetch(entry)
            rendered = await render_chart(
                archive, release_name=source.release, namespace=namespace, values=values
            )
            self._done[key] = (list(rendered.objects), [h.object for h in rendered.hooks])
        return self._done[key]


@dataclass(frozen=True, kw_only=True)
class _Derivation:
    """One declaration's walk: every operation at every version and parameter combination."""

    declaration: MeshDeclaration
    versions: Sequence[str]
    renders: _Renders
    manifests: ManifestLibrary
    collector: NeedCollector

    async def operation(self, spec: OperationSpec) -> None:
        if spec.custom:
            # A custom body naming unknown custom kinds makes planning read CRD scopes; the kinds
            # of the body itself cannot be known in advance (the role limits what it may apply).
            self.collector.need(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                ("list",),
                f"{spec.id}: scope of custom kinds",
            )
            return
        applicable = [v for v in self.versions if not spec.mesh_versions or v in spec.mesh_versions]
        for parameters, version in itertools.product(parameter_sets(spec), applicable):
            why = f"{spec.id} {version} {json.dumps(parameters, sort_keys=True)}"
            reader = RecordingReader(self.collector, why)
            if spec.check is not None:
                await spec.check(
                    CheckContext(
                        mesh=self.declaration.mesh,
                        namespace=spec.default_namespace,
                        parameters=parameters,
                        cluster=reader,
                    )
                )
            for delete in (False, True) if spec.supports_delete else (False,):
                ctx = PlanContext(
                    mesh=self.declaration.mesh,
                    operation=spec.id,
                    namespace=spec.default_namespace,
                    mesh_version=version,
                    parameters=parameters,
                    delete=delete,
                    cluster=reader,
                )
                await self._sources(spec, ctx, why)

    async def _sources(self, spec: OperationSpec, ctx: PlanContext, why: str) -> None:
        verbs = FIELDS_VERBS if spec.ownership is Ownership.FIELDS else OWNED_VERBS
        for source in spec.sources:
            if source.when is not None:
                await source.when(ctx)  # records its reads; the objects count either way
            if isinstance(source, sources.ChartSource):
                objects, hooks = await self.renders.render(source, ctx)
                label = f"{why} chart {source.chart}"
                self.collector.objects(objects, verbs, label)
                self.collector.objects(hooks, HOOK_VERBS, f"{label} (hook)")
            elif isinstance(source, sources.ManifestSource):
                loaded = await self.manifests.load(source, ctx.mesh_version)
                self.collector.objects(loaded, verbs, f"{why} manifest {source.file}")
            else:
                built = await source.build(ctx)
                self.collector.objects(built, verbs, f"{why} built")


async def derive(
    declaration: MeshDeclaration,
    *,
    charts: ChartRepository,
    manifests: ManifestLibrary,
    install_chart: str,
    versions: Sequence[str] | None = None,
) -> Requirements:
    """What ``declaration``'s adapter needs, over ``versions`` (default: every version of
    ``install_chart`` in the repository)."""
    chosen = list(versions) if versions is not None else await charts.versions(install_chart)
    collector = NeedCollector()
    # The kit's own needs, whatever the mesh applies.
    collector.need("v1", "Secret", OWNED_VERBS, "release inventory (meshplane-release-*)")
    collector.need("v1", "Namespace", FIELDS_VERBS, "release namespace created when missing")
    if declaration.injection_label is not None or declaration.injection_annotation is not None:
        collector.need("v1", "Namespace", ("list",), "mesh status: injection namespaces")
    derivation = _Derivation(
        declaration=declaration,
        versions=chosen,
        renders=_Renders(charts),
        manifests=manifests,
        collector=collector,
    )
    for spec in declaration.operations:
        await derivation.operation(spec)
    requirements = collector.finish(declaration.mesh, chosen)
    log.info(
        "rbac derived",
        mesh=declaration.mesh,
        versions=chosen,
        permissions=len(requirements.permissions),
    )
    return requirements


async def derive_for_mesh(
    declaration: MeshDeclaration,
    *,
    chart_repo: str = "",
    mirror: Path | None = None,
    manifests_url: str = "",
    cache_dir: Path,
) -> Requirements:
    """`derive` with the chart repository and manifests an adapter configured the same way
    (``--chart-repo``, ``--mirror``, ``--manifests-url``) would use."""
    from adapters.kit.process.executor_assembly import build_executor
    from adapters.kit.process.settings import AdapterSettings
    from adapters.kit.run.executor.chart_versions import install_chart

    settings = AdapterSettings(
        chart_repo=chart_repo,
        mirror_dir=mirror,
        manifests_url=manifests_url,
        cache_dir=cache_dir,
    )
    executor, _ = build_executor(declaration, settings)
    planner = executor.planner
    return await derive(
        declaration,
        charts=planner.charts,
        manifests=planner.manifests,
        install_chart=install_chart(declaration),
    )
