"""From a catalogue entry and a request to an `ApplyPlan`: render, fetch, build, order.

Each source of an `OperationSpec` contributes objects in declaration order: charts are resolved
in the repository index at the mesh version and rendered (hooks split out), manifests are
fetched from the mirror or from upstream at the mesh version, object builders run on the
request, and a `custom` request's YAML body is loaded safely. The union is namespaced, sorted in
install order and stamped with what was rendered (chart versions, mesh version, values digest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category, OperationSpec, Ownership
from adapters.kit.declare.sources import ChartSource, ManifestSource, PlanContext
from adapters.kit.model.custom_bodies import CustomBodyInvalid, load_custom_body
from adapters.kit.model.objects import KubeObject, ObjectRef, crd_scopes, with_default_namespace
from adapters.kit.model.ordering import sort_for_install
from adapters.kit.model.plans import CREATE_NAMESPACE, ApplyPlan, Hook
from adapters.kit.model.records import ErrorDetail, OperationRecord
from adapters.kit.model.yaml_documents import ManifestError
from adapters.kit.plan.chart_repository import (
    ChartDigestMismatch,
    ChartRepository,
    ChartRepositoryError,
    ChartRepositoryUnavailable,
    ChartVersionNotFound,
)
from adapters.kit.plan.manifest_fetching import (
    ManifestFetchError,
    ManifestLibrary,
    ManifestUnavailable,
)
from adapters.kit.plan.render_cache import RenderCache, RenderedChart

if TYPE_CHECKING:
    pass

__all__ = [
    "PlanError",
    "Planner",
    "values_digest",
]

log = structlog.get_logger(__name__)

StepNote = Callable[[str], None]
"""Receives a one-line note per planning step (rendered a chart, fetched a manifest)."""


class PlanError(Exception):
    """The plan cannot be built; carries what to tell the user."""

    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(f"{detail.code}: {detail.message}")
        self.detail = detail


def values_digest(values: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of chart values (keys sorted, no whitespace)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _silent(_text: str) -> None:
    """The note taker when nobody listens."""


@dataclass(kw_only=True)
class _PlanRun:
    """One plan being built: what its sources read, the cluster charts render for, where notes
    go, and what the sources have contributed so far (in declaration order)."""

    ctx: PlanContext
    kube_version: str | None
    api_versions: list[str]
    say: StepNote
    objects: list[KubeObject] = field(default_factory=list)
    hooks: list[Hook] = field(default_factory=list)
    keep: set[str] = field(default_factory=set)
    charts: dict[str, str] = field(default_factory=dict)
    """``chart.<release>`` -> ``<chart>-<version>`` of each rendered chart."""
    chart_values: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def metadata(self, operation: str) -> dict[str, str]:
        """What the plan is stamped with: operation, mesh version, charts, values digest."""
        stamped = {"operation": operation}
        if self.ctx.mesh_version:
            stamped["mesh_version"] = self.ctx.mesh_version
        stamped.update(self.charts)
        if self.chart_values:
            stamped["values_digest"] = values_digest(self.chart_values)
        return stamped


class Planner:
    """Builds the `ApplyPlan` of one operation on one cluster."""

    def __init__(
        self,
        declaration: MeshDeclaration,
        *,
        charts: ChartRepository,
        manifests: ManifestLibrary,
        render_cache: RenderCache | None = None,
        kube_version: str | None = None,
    ) -> None:
        self.declaration = declaration
        self.charts = charts
        self.manifests = manifests
        self.render_cache = render_cache or RenderCache(None)
        self.kube_version = kube_version

    async def plan(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        cluster: ClusterReader,
        *,
        mesh_version: str = "",
        note: StepNote | None = None,
        kube_version: str | None = None,
        api_versions: Sequence[str] = (),
    ) -> ApplyPlan:
        """Render/fetch/build every source of ``spec`` for ``record`` into one ordered plan.

        Charts render for the target cluster: ``kube_version`` (else the planner's) and the
        ``api_versions`` it serves (see `rendering.render_chart`).

        ``mesh_version`` stands in when the record has none (e.g. the installed version, for a
        sample fetched from upstream at the matching tag); failing both, the newest stable
        version of the first chart is used.
        """
        run = _PlanRun(
            ctx=await self._context(spec, record, cluster, mesh_version),
            kube_version=kube_version or self.kube_version,
            api_versions=sorted(set(api_versions)),
            say=note or _silent,
        )
        for source in spec.sources:
            if source.when is not None and not await source.when(run.ctx):
                if isinstance(source, ManifestSource):
                    run.say(f"skipped {source.file}: its condition does not hold")
                continue
            if isinstance(source, ChartSource):
                await self._add_chart(source, run)
            elif isinstance(source, ManifestSource):
                await self._add_manifest(source, run)
            else:
                run.objects.extend(await source.build(run.ctx))
        # Request YAML comes namespaced already (by the cluster's CRD scopes, which the
        # declaration's objects do not need).
        requested = await _custom_objects(run.ctx, cluster) if spec.custom else []
        plan = self._assemble(spec, record, run, requested)
        log.debug(
            "plan built",
            mesh=self.declaration.mesh,
            operation=spec.id,
            release=plan.release,
            namespace=plan.namespace,
            objects=len(plan.objects),
            hooks=len(plan.hooks),
        )
        return plan

    async def _context(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        cluster: ClusterReader,
        mesh_version: str,
    ) -> PlanContext:
        """What the sources read: the request with its defaults, at the version planned for."""
        return PlanContext(
            mesh=self.declaration.mesh,
            operation=spec.id,
            namespace=record.namespace or spec.default_namespace,
            mesh_version=record.mesh_version or mesh_version or await self._default_version(spec),
            parameters=_with_defaults(spec, record.parameters),
            delete=record.delete,
            cluster=cluster,
            custom_body=record.custom_body,
        )

    async def _add_chart(self, source: ChartSource, run: _PlanRun) -> None:
        values = dict(await source.values(run.ctx)) if source.values is not None else {}
        rendered = await self._render(source, run, values)
        run.objects.extend(rendered.objects)
        run.hooks.extend(rendered.hooks)
        if not source.purge_on_delete:
            run.keep |= rendered.kept_keys
        run.charts[f"chart.{source.release}"] = f"{rendered.chart_name}-{rendered.chart_version}"
        run.chart_values[source.release] = values
        run.say(
            f"rendered chart {rendered.chart_name} {rendered.chart_version} as "
            f"{source.release}: {len(rendered.objects)} objects"
        )

    async def _add_manifest(self, source: ManifestSource, run: _PlanRun) -> None:
        loaded = await self._fetch(source, run.ctx.mesh_version)
        run.objects.extend(loaded)
        run.say(f"fetched {source.file}: {len(loaded)} objects")

    def _assemble(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        run: _PlanRun,
        requested: list[KubeObject],
    ) -> ApplyPlan:
        """The gathered objects (namespaced, in install order) and hooks, as one plan."""
        namespace = run.ctx.namespace
        return ApplyPlan(
            release=self.declaration.release_of(spec, record.custom_body),
            namespace=namespace,
            mesh=self.declaration.mesh,
            objects=tuple(
                sort_for_install([*with_default_namespace(run.objects, namespace), *requested])
            ),
            hooks=tuple(run.hooks),
            keep=frozenset(run.keep),
            metadata=run.metadata(spec.id),
            ownership_fields_only=spec.ownership is Ownership.FIELDS,
            requested=frozenset(ObjectRef.from_manifest(obj).key for obj in requested),
            create_namespaces=spec.category is Category.INSTALL
            or record.parameters.get(CREATE_NAMESPACE, "").lower() == "true",
        )

    async def _default_version(self, spec: OperationSpec) -> str:
        """The newest stable version, when something of this spec depends on a version."""
        charts = [s for s in spec.sources if isinstance(s, ChartSource)]
        upstream_manifests = not self.manifests.mirror_url and any(
            isinstance(s, ManifestSource) for s in spec.sources
        )
        if not charts and not upstream_manifests:
            return ""
        first = charts[0].chart if charts else self._install_chart()
        if first is None:
            return ""
        try:
            return (await self.charts.resolve(first)).version
        except ChartRepositoryError as exc:
            raise PlanError(_chart_error(exc, first, "")) from exc

    def _install_chart(self) -> str | None:
        for spec in self.declaration.operations:
            if spec.release_name == self.declaration.status_release:
                for source in spec.sources:
                    if isinstance(source, ChartSource):
                        return source.chart
        return None

    async def _render(
        self, source: ChartSource, run: _PlanRun, values: Mapping[str, Any]
    ) -> RenderedChart:
        ctx = run.ctx
        try:
            entry = await self.charts.resolve(source.chart, ctx.mesh_version or None)
            archive = await self.charts.fetch(entry)
        except ChartRepositoryError as exc:
            raise PlanError(_chart_error(exc, source.chart, ctx.mesh_version)) from exc
        namespace = source.namespace or ctx.namespace
        key = self.render_cache.key(
            digest=entry.digest,
            release=source.release,
            namespace=namespace,
            values=values,
            kube_version=run.kube_version,
            api_versions=run.api_versions,
        )
        cached = await self.render_cache.get(key)
        if cached is not None:
            return cached
        # Imported here: the Helm engine is a large native library an idle adapter need not hold.
        from adapters.kit.plan.rendering import ChartRenderError, render_chart

        try:
            rendered = await render_chart(
                archive,
                release_name=source.release,
                namespace=namespace,
                values=values,
                kube_version=run.kube_version,
                api_versions=run.api_versions,
            )
        except ChartRenderError as exc:
            raise PlanError(
                ErrorDetail(
                    code="CHART_RENDER_FAILED",
                    message=f"chart {source.chart} {entry.version} did not render: {exc}",
                    probable_cause="the values do not fit this chart version",
                    suggested_remediation="check the operation's parameters, or pick another "
                    "mesh version",
                )
            ) from exc
        chart = RenderedChart.of(rendered, source.chart, entry.version)
        await self.render_cache.put(key, chart)
        return chart

    async def _fetch(self, source: ManifestSource, version: str) -> list[KubeObject]:
        base, name = self.manifests.location(source, version)
        try:
            return await self.manifests.load(source, version)
        except ManifestUnavailable as exc:
            raise PlanError(
                ErrorDetail(
                    code="MANIFEST_UNAVAILABLE",
                    message=str(exc),
                    probable_cause=f"{base} is unreachable and {name} was never cached",
                    suggested_remediation="check network access to the manifests URL, or point "
                    "--manifests-url at a mirror",
                )
            ) from exc
        except (ManifestFetchError, ManifestError) as exc:
            raise PlanError(
                ErrorDetail(
                    code="MANIFEST_INVALID",
                    message=f"cannot use {name} from {base}: {exc}",
                    probable_cause="the file is missing at that version, or is not Kubernetes YAML",
                    suggested_remediation="check the manifests URL and the mesh version",
                )
            ) from exc


def _with_defaults(spec: OperationSpec, parameters: Mapping[str, str]) -> dict[str, str]:
    merged = {p.name: p.default for p in spec.parameters if p.default}
    merged.update(parameters)
    return merged


def _chart_error(exc: ChartRepositoryError, chart: str, version: str) -> ErrorDetail:
    if isinstance(exc, ChartVersionNotFound):
        return ErrorDetail(
            code="MESH_VERSION_NOT_FOUND",
            message=str(exc),
            probable_cause=f"version {version or '(newest stable)'} of {chart} is not in the "
            "chart repository index",
            suggested_remediation="pick a version from ListMeshVersions",
        )
    if isinstance(exc, ChartDigestMismatch):
        return ErrorDetail(
            code="CHART_DIGEST_MISMATCH",
            message=str(exc),
            probable_cause="the archive was altered or the index is stale",
            suggested_remediation="check the chart repository; do not install unverified charts",
        )
    if isinstance(exc, ChartRepositoryUnavailable):
        return ErrorDetail(
            code="CHART_REPOSITORY_UNAVAILABLE",
            message=str(exc),
            probable_cause="the chart repository is unreachable and nothing is cached",
            suggested_remediation="check network access to the repository, or use a mirror "
            "(--chart-repo)",
        )
    return ErrorDetail(
        code="CHART_REPOSITORY_ERROR",
        message=str(exc),
        probable_cause="the chart repository answered with something unusable",
        suggested_remediation="check the repository URL and its index.yaml",
    )


async def _custom_objects(ctx: PlanContext, cluster: ClusterReader) -> list[KubeObject]:
    """The custom body's objects, namespaced by default (judged later by `object_policy`)."""
    try:
        objects = load_custom_body(ctx.custom_body)
    except CustomBodyInvalid as exc:
        raise PlanError(
            ErrorDetail(
                code="INVALID_ARGUMENT",
                message=f"custom_body: {exc}",
                probable_cause="custom_body is not what the custom operation accepts",
                suggested_remediation="fix the YAML in custom_body",
            )
        ) from exc
    scopes = crd_scopes(objects)
    if any(_custom_kind(o) and (_group(o), o["kind"]) not in scopes for o in objects):
        scopes = {**await _cluster_crd_scopes(cluster), **scopes}
    return with_default_namespace(objects, ctx.namespace, extra_crds=scopes)


def _group(obj: KubeObject) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


def _custom_kind(obj: KubeObject) -> bool:
    group = _group(obj)
    return "." in group and not group.endswith(".k8s.io")


async def _cluster_crd_scopes(cluster: ClusterReader) -> dict[tuple[str, str], bool]:
    crds = await cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
    return crd_scopes(crds)
