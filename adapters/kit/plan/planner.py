"""From a catalogue entry and a request to an `ApplyPlan`: render, fetch, build, order.

Each source of an `OperationSpec` contributes objects in declaration order: charts are resolved
in the repository index at the mesh version and rendered (hooks split out), manifests are
fetched from the mirror or from upstream at the mesh version, object builders run on the
request, and a `custom` request's YAML body is loaded safely. The union is namespaced, sorted in
install order and stamped with what was rendered (chart versions, mesh version, values digest).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category, OperationSpec, Ownership
from adapters.kit.declare.sources import ChartSource, ManifestSource, ObjectsSource, PlanContext
from adapters.kit.model.custom_bodies import CustomBodyInvalid, load_custom_body
from adapters.kit.model.objects import KubeObject, ObjectRef, crd_scopes, with_default_namespace
from adapters.kit.model.ordering import sort_for_install
from adapters.kit.model.plans import CREATE_NAMESPACE, ApplyPlan, Hook, HookPhase
from adapters.kit.model.records import ErrorDetail, OperationRecord
from adapters.kit.model.yaml_documents import ManifestError
from adapters.kit.plan.chart_repository import (
    ChartDigestMismatch,
    ChartRepository,
    ChartRepositoryError,
    ChartRepositoryUnavailable,
    ChartVersionNotFound,
)
from adapters.kit.plan.downloading import write_atomically
from adapters.kit.plan.manifest_fetching import (
    ManifestFetchError,
    ManifestLibrary,
    ManifestUnavailable,
)

if TYPE_CHECKING:
    from adapters.kit.plan.rendering import RenderedRelease

__all__ = [
    "PlanError",
    "Planner",
    "RenderCache",
    "RenderedChart",
    "values_digest",
]

log = structlog.get_logger(__name__)

_PHASES = {phase.value: phase for phase in HookPhase}

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
        say = note or (lambda _text: None)
        namespace = record.namespace or spec.default_namespace
        version = record.mesh_version or mesh_version or await self._default_version(spec)
        ctx = PlanContext(
            mesh=self.declaration.mesh,
            operation=spec.id,
            namespace=namespace,
            mesh_version=version,
            parameters=_with_defaults(spec, record.parameters),
            delete=record.delete,
            cluster=cluster,
            custom_body=record.custom_body,
        )
        objects: list[KubeObject] = []
        hooks: list[Hook] = []
        keep: set[str] = set()
        metadata: dict[str, str] = {"operation": spec.id}
        if version:
            metadata["mesh_version"] = version
        chart_values: dict[str, Mapping[str, Any]] = {}
        for source in spec.sources:
            if isinstance(source, ChartSource):
                if source.when is not None and not await source.when(ctx):
                    continue
                values = await _values(source, ctx)
                rendered = await self._render(
                    source,
                    ctx,
                    values,
                    kube_version=kube_version or self.kube_version,
                    api_versions=sorted(set(api_versions)),
                )
                objects.extend(rendered.objects)
                hooks.extend(rendered.hooks)
                if not source.purge_on_delete:
                    keep |= rendered.kept_keys
                metadata[f"chart.{source.release}"] = (
                    f"{rendered.chart_name}-{rendered.chart_version}"
                )
                chart_values[source.release] = values
                say(
                    f"rendered chart {rendered.chart_name} {rendered.chart_version} as "
                    f"{source.release}: {len(rendered.objects)} objects"
                )
            elif isinstance(source, ManifestSource):
                if source.when is not None and not await source.when(ctx):
                    say(f"skipped {source.file}: its condition does not hold")
                    continue
                loaded = await self._fetch(source, version)
                objects.extend(loaded)
                say(f"fetched {source.file}: {len(loaded)} objects")
            elif isinstance(source, ObjectsSource):
                if source.when is not None and not await source.when(ctx):
                    continue
                objects.extend(await source.build(ctx))
        # Request YAML comes namespaced already (by the cluster's CRD scopes, which the
        # declaration's objects do not need).
        requested = await _custom_objects(ctx, cluster) if spec.custom else []
        if chart_values:
            metadata["values_digest"] = values_digest(chart_values)
        release = self.declaration.release_of(spec, record.custom_body)
        plan = ApplyPlan(
            release=release,
            namespace=namespace,
            mesh=self.declaration.mesh,
            objects=tuple(
                sort_for_install([*with_default_namespace(objects, namespace), *requested])
            ),
            hooks=tuple(hooks),
            keep=frozenset(keep),
            metadata=metadata,
            ownership_fields_only=spec.ownership is Ownership.FIELDS,
            requested=frozenset(ObjectRef.from_manifest(obj).key for obj in requested),
            create_namespaces=spec.category is Category.INSTALL
            or record.parameters.get(CREATE_NAMESPACE, "").lower() == "true",
        )
        log.debug(
            "plan built",
            mesh=self.declaration.mesh,
            operation=spec.id,
            release=release,
            namespace=namespace,
            objects=len(plan.objects),
            hooks=len(plan.hooks),
        )
        return plan

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
        self,
        source: ChartSource,
        ctx: PlanContext,
        values: Mapping[str, Any],
        *,
        kube_version: str | None,
        api_versions: list[str],
    ) -> RenderedChart:
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
            kube_version=kube_version,
            api_versions=api_versions,
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
                kube_version=kube_version,
                api_versions=api_versions,
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


@dataclass(frozen=True, kw_only=True)
class RenderedChart:
    """What planning keeps of one rendered chart (and what the render cache stores)."""

    chart_name: str
    chart_version: str
    objects: tuple[KubeObject, ...]
    hooks: tuple[Hook, ...]
    kept_keys: frozenset[str]

    @classmethod
    def of(cls, rendered: RenderedRelease, chart: str, version: str) -> RenderedChart:
        """Keep the install set, the hooks of the phases we run, and what uninstall keeps."""
        hooks: list[Hook] = []
        for hook in rendered.hooks:
            phases = tuple(_PHASES[e] for e in sorted(hook.events) if e in _PHASES)
            if phases:
                hooks.append(
                    Hook(
                        manifest=hook.object,
                        phases=phases,
                        weight=hook.weight,
                        delete_policies=hook.delete_policies,
                    )
                )
        return cls(
            chart_name=rendered.chart_name or chart,
            chart_version=rendered.chart_version or version,
            objects=tuple(rendered.objects),
            hooks=tuple(hooks),
            kept_keys=rendered.kept_keys,
        )

    def to_json(self) -> dict[str, Any]:
        """The cached form."""
        return {
            "chartName": self.chart_name,
            "chartVersion": self.chart_version,
            "objects": list(self.objects),
            "hooks": [
                {
                    "manifest": hook.manifest,
                    "phases": [phase.value for phase in hook.phases],
                    "weight": hook.weight,
                    "deletePolicies": list(hook.delete_policies),
                }
                for hook in self.hooks
            ],
            "keptKeys": sorted(self.kept_keys),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RenderedChart:
        """Parse the cached form; a malformed entry is a KeyError/TypeError/ValueError."""
        return cls(
            chart_name=str(data["chartName"]),
            chart_version=str(data["chartVersion"]),
            objects=tuple(data["objects"]),
            hooks=tuple(
                Hook(
                    manifest=hook["manifest"],
                    phases=tuple(HookPhase(p) for p in hook["phases"]),
                    weight=int(hook["weight"]),
                    delete_policies=tuple(str(p) for p in hook["deletePolicies"]),
                )
                for hook in data["hooks"]
            ),
            kept_keys=frozenset(str(k) for k in data["keptKeys"]),
        )


_RENDERER_MODULES = (
    "adapters.kit.plan.rendering",
    "adapters.kit.model.yaml_documents",
    "adapters.kit.model.objects",
    "adapters.kit.model.ordering",
)


def _renderer_identity() -> str:
    """What else decides a render's output: the Helm engine's version and our parsing code."""
    digest = hashlib.sha256()
    try:
        digest.update(importlib.metadata.version("helm-python-sdk").encode())
    except importlib.metadata.PackageNotFoundError:
        digest.update(b"helm-python-sdk unknown")
    for name in _RENDERER_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()


class RenderCache:
    """Rendered charts on disk, keyed by everything that decides the output.

    The key covers the archive digest (from the verified index), release, namespace, values,
    Kubernetes version, served API versions and the renderer itself, so an entry is reused only
    when rendering again would give the same objects. Parsing a large rendered chart (Istio's
    CRDs are ~1 MiB of YAML) costs far more than the rendering; the cache makes a repeated
    install cost a JSON load.
    ``directory`` None disables it.
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._renderer = ""

    def key(
        self,
        *,
        digest: str,
        release: str,
        namespace: str,
        values: Mapping[str, Any],
        kube_version: str | None,
        api_versions: Sequence[str] = (),
    ) -> str:
        """The cache key of one render."""
        if not self._renderer:
            self._renderer = _renderer_identity()
        text = json.dumps(
            [
                self._renderer,
                digest,
                release,
                namespace,
                values,
                kube_version or "",
                sorted(set(api_versions)),
            ],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    async def get(self, key: str) -> RenderedChart | None:
        """The cached render, or None (missing or unreadable entries are a miss)."""
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None
        try:
            return RenderedChart.from_json(json.loads(data))
        except (KeyError, TypeError, ValueError):
            log.warning("render cache entry unreadable; rendering again", path=str(path))
            return None

    async def put(self, key: str, chart: RenderedChart) -> None:
        """Store a render (atomically; a failure to write only costs a later re-render)."""
        if self.directory is None:
            return
        data = json.dumps(chart.to_json(), separators=(",", ":")).encode("utf-8")
        try:
            await asyncio.to_thread(write_atomically, self.directory / f"{key}.json", data)
        except OSError as exc:
            log.warning("cannot write the render cache", error=str(exc))


async def _values(source: ChartSource, ctx: PlanContext) -> dict[str, Any]:
    return dict(await source.values(ctx)) if source.values is not None else {}


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
