"""Helm chart rendering into Kubernetes objects: install set, hooks, and what uninstall keeps.

Rendering is offline (helm-python-sdk, Helm v4's engine) and CPU-bound native work, so it runs
in a worker thread. The release's objects are split the way Helm splits them: NOTES.txt is
text, not an object; `helm.sh/hook` objects run around the install/upgrade/delete rather than
being part of it, and `test` hooks are not installed at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import helm_python
import structlog
from helm_python import _native

from adapters.kit.model.objects import KubeObject, ObjectRef, crd_scopes, with_default_namespace
from adapters.kit.model.ordering import INSTALL_ORDER, sort_for_install
from adapters.kit.model.yaml_documents import ManifestError, load_documents

__all__ = [
    "HOOK_EVENTS",
    "ChartRenderError",
    "Hook",
    "RenderedRelease",
    "render_chart",
]

log = structlog.get_logger(__name__)

HOOK_ANNOTATION = "helm.sh/hook"
HOOK_WEIGHT_ANNOTATION = "helm.sh/hook-weight"
HOOK_DELETE_POLICY_ANNOTATION = "helm.sh/hook-delete-policy"
RESOURCE_POLICY_ANNOTATION = "helm.sh/resource-policy"

HOOK_EVENTS: frozenset[str] = frozenset(
    {
        "pre-install",
        "post-install",
        "pre-upgrade",
        "post-upgrade",
        "pre-delete",
        "post-delete",
        "pre-rollback",
        "post-rollback",
    }
)
# `test-success` is the Helm 2 name of `test`; both run only under `helm test`.
TEST_HOOK_EVENTS: frozenset[str] = frozenset({"test", "test-success"})

# Rendered charts are trusted more than user input but are still parsed with bounded aliases;
# a CRD-heavy template file can be several MiB.
_TEMPLATE_MAX_BYTES = 64 * 1024 * 1024


class ChartRenderError(RuntimeError):
    """A chart could not be loaded or rendered; the message carries Helm's reason."""


@dataclass(frozen=True, kw_only=True)
class Hook:
    """One hook object and when it runs (Helm sorts hooks by weight, then kind, then name)."""

    events: frozenset[str]
    weight: int
    delete_policies: tuple[str, ...]
    template: str
    object: KubeObject

    @property
    def ref(self) -> ObjectRef:
        """The hook object's reference."""
        return ObjectRef.from_manifest(self.object)


@dataclass(frozen=True, kw_only=True)
class RenderedRelease:
    """The result of rendering one chart for one release.

    ``objects`` is the install set (no hooks, no test hooks) in install order, including the
    chart's ``crds/`` folder on install. ``kept_keys`` holds ``ObjectRef.key`` of objects that
    uninstall must leave in place (``helm.sh/resource-policy: keep`` and ``crds/`` CRDs, which
    Helm never deletes).
    """

    release_name: str
    namespace: str
    chart_name: str
    chart_version: str
    app_version: str
    objects: tuple[KubeObject, ...]
    hooks: tuple[Hook, ...]
    kept_keys: frozenset[str]
    skipped_test_hooks: tuple[str, ...]
    notes: str

    def hooks_for(self, event: str) -> list[Hook]:
        """Hooks of one event in the order Helm runs them."""
        if event not in HOOK_EVENTS:
            raise ValueError(f"unknown hook event {event!r}; known: {sorted(HOOK_EVENTS)}")
        return sorted(
            (hook for hook in self.hooks if event in hook.events),
            key=lambda hook: (
                hook.weight,
                _kind_rank(hook.object),
                str((hook.object.get("metadata") or {}).get("name", "")),
            ),
        )

    def is_kept(self, obj: KubeObject) -> bool:
        """Whether uninstall must leave ``obj`` in place."""
        return ObjectRef.from_manifest(obj).key in self.kept_keys


def _kind_rank(obj: KubeObject) -> int:
    kind = str(obj.get("kind", ""))
    return INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)


async def render_chart(
    chart_path: Path,
    *,
    release_name: str,
    namespace: str,
    values: Mapping[str, Any] | None = None,
    is_install: bool = True,
    is_upgrade: bool = False,
    kube_version: str | None = None,
    api_versions: Sequence[str] = (),
) -> RenderedRelease:
    """Render ``chart_path`` (a directory or ``.tgz``) in a worker thread.

    Charts pick apiVersions by the target cluster, so render with its facts: ``kube_version``
    (e.g. ``"v1.33.0"``) sets ``.Capabilities.KubeVersion`` (default: Helm's built-in version);
    ``api_versions`` (``"policy/v1"``, ``"policy/v1/PodDisruptionBudget"``, as Helm reads them
    from discovery) are added to ``.Capabilities.APIVersions``, which otherwise holds only Helm's
    built-in group/versions, so ``APIVersions.Has "<group/version>/<Kind>"`` is false.
    """
    if is_install == is_upgrade:
        raise ValueError("exactly one of is_install and is_upgrade must be true")
    request = _RenderRequest(
        release_name=release_name,
        namespace=namespace,
        values=dict(values or {}),
        is_install=is_install,
        is_upgrade=is_upgrade,
        kube_version=kube_version,
        api_versions=list(api_versions),
    )
    return await asyncio.to_thread(_render_sync, chart_path, request)


@dataclass(frozen=True, kw_only=True)
class _RenderRequest:
    """One render: the release, its values, install or upgrade, and the cluster's facts."""

    release_name: str
    namespace: str
    values: dict[str, Any]
    is_install: bool
    is_upgrade: bool
    kube_version: str | None
    api_versions: list[str]

    @property
    def for_cluster(self) -> bool:
        """Whether the cluster's facts replace Helm's built-in capabilities."""
        return self.kube_version is not None or bool(self.api_versions)

    def native_options(self) -> dict[str, Any]:
        """The options of the SDK's native render entry point."""
        options: dict[str, Any] = {
            "name": self.release_name,
            "namespace": self.namespace,
            "is_install": self.is_install,
            "is_upgrade": self.is_upgrade,
        }
        if self.kube_version is not None:
            options["kube_version"] = self.kube_version
        if self.api_versions:
            options["api_versions"] = self.api_versions
        return options


@dataclass(frozen=True, kw_only=True)
class _HelmOutput:
    """What Helm gives back: the chart's metadata, rendered templates by path, ``crds/``."""

    metadata: dict[str, Any]
    manifests: dict[str, str]
    crds: list[dict[str, str]]


def _run_helm(chart_path: Path, request: _RenderRequest) -> _HelmOutput:
    try:
        with helm_python.Chart.load(chart_path) as chart:
            return _HelmOutput(
                metadata=chart.metadata,
                manifests=_rendered_templates(chart, request),
                crds=chart.crds if request.is_install else [],
            )
    except helm_python.HelmError as exc:
        raise ChartRenderError(f"cannot render chart {chart_path}: {exc}") from exc
    except TypeError as exc:  # from encoding the values for the native call
        raise ChartRenderError(
            f"values for chart {chart_path} must be JSON-like (mappings, lists, scalars): {exc}"
        ) from exc


def _rendered_templates(chart: helm_python.Chart, request: _RenderRequest) -> dict[str, str]:
    if not request.for_cluster:
        return chart.render(
            request.values,
            name=request.release_name,
            namespace=request.namespace,
            is_install=request.is_install,
            is_upgrade=request.is_upgrade,
        )
    # The SDK's Python wrapper does not pass kube_version/api_versions through yet, though its
    # native render accepts them; call the native entry point with the same options.
    rendered: dict[str, str] = json.loads(
        _native.call_string(
            "helm_render",
            chart._raw(),
            json.dumps(request.values),
            json.dumps(request.native_options()),
        )
    )
    return rendered


@dataclass(kw_only=True)
class _SortedTemplates:
    """A render's templates sorted out the way Helm does: the top chart's notes, plain objects,
    hooks (with their template), and test hooks, which are never installed."""

    notes: list[str] = field(default_factory=list)
    plain: list[KubeObject] = field(default_factory=list)
    hook_sources: list[tuple[str, KubeObject]] = field(default_factory=list)
    skipped_tests: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, manifests: Mapping[str, str], chart_name: str) -> _SortedTemplates:
        """Sort out every template, in path order."""
        sorted_out = cls()
        for template in sorted(manifests):
            text = manifests[template]
            base = PurePosixPath(template).name
            if base == "NOTES.txt":
                # Helm shows only the top chart's notes.
                if template == f"{chart_name}/templates/NOTES.txt" and text.strip():
                    sorted_out.notes.append(text)
            elif not base.startswith("_") and text.strip():
                for obj in _parse_template(text, template):
                    sorted_out.add(template, obj)
        return sorted_out

    def add(self, template: str, obj: KubeObject) -> None:
        """One rendered object: plain, a hook, or a test hook (skipped)."""
        annotations = _annotations(obj)
        if HOOK_ANNOTATION not in annotations:
            self.plain.append(obj)
            return
        events = {e.strip() for e in str(annotations[HOOK_ANNOTATION]).split(",") if e.strip()}
        if events and events <= TEST_HOOK_EVENTS:
            self.skipped_tests.append(str(ObjectRef.from_manifest(obj)))
        else:
            self.hook_sources.append((template, obj))


def _render_sync(chart_path: Path, request: _RenderRequest) -> RenderedRelease:
    helm = _run_helm(chart_path, request)
    chart_name = str(helm.metadata.get("name", ""))
    templates = _SortedTemplates.of(helm.manifests, chart_name)
    crd_objects: list[KubeObject] = []
    for crd in helm.crds:
        crd_objects.extend(_parse_template(crd["data"], crd["name"]))
    namespace = request.namespace
    everything = crd_objects + templates.plain + [obj for _, obj in templates.hook_sources]
    scopes = crd_scopes(everything)
    crd_objects = with_default_namespace(crd_objects, namespace, extra_crds=scopes)
    plain = with_default_namespace(templates.plain, namespace, extra_crds=scopes)
    hooks: list[Hook] = []
    for template, raw in templates.hook_sources:
        (obj,) = with_default_namespace([raw], namespace, extra_crds=scopes)
        hook = _hook(template, obj)
        if hook is not None:
            hooks.append(hook)
    release = RenderedRelease(
        release_name=request.release_name,
        namespace=namespace,
        chart_name=chart_name,
        chart_version=str(helm.metadata.get("version", "")),
        app_version=str(helm.metadata.get("appVersion", "")),
        objects=tuple(sort_for_install(crd_objects + plain)),
        hooks=tuple(hooks),
        kept_keys=_kept_keys(crd_objects, plain),
        skipped_test_hooks=tuple(templates.skipped_tests),
        notes="".join(templates.notes),
    )
    log.debug(
        "chart rendered",
        chart=chart_name,
        version=release.chart_version,
        release=request.release_name,
        namespace=namespace,
        objects=len(release.objects),
        hooks=len(release.hooks),
        skipped_test_hooks=len(release.skipped_test_hooks),
    )
    return release


def _kept_keys(crd_objects: list[KubeObject], plain: list[KubeObject]) -> frozenset[str]:
    """What uninstall leaves: ``crds/`` CRDs (Helm never deletes them) and objects marked
    ``helm.sh/resource-policy: keep``."""
    kept = {ObjectRef.from_manifest(o).key for o in crd_objects}
    kept |= {
        ObjectRef.from_manifest(o).key
        for o in plain
        if str(_annotations(o).get(RESOURCE_POLICY_ANNOTATION, "")).strip() == "keep"
    }
    return frozenset(kept)


def _parse_template(text: str, template: str) -> list[KubeObject]:
    try:
        objects = load_documents(text, max_bytes=_TEMPLATE_MAX_BYTES, source=f"template {template}")
    except ManifestError as exc:
        raise ChartRenderError(f"chart rendered invalid YAML: {exc}") from exc
    for obj in objects:
        try:
            ObjectRef.from_manifest(obj)
        except ValueError as exc:
            raise ChartRenderError(
                f"template {template} rendered an unusable object: {exc}"
            ) from exc
    return objects


def _annotations(obj: KubeObject) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _hook(template: str, obj: KubeObject) -> Hook | None:
    annotations = _annotations(obj)
    declared = {e.strip() for e in str(annotations[HOOK_ANNOTATION]).split(",") if e.strip()}
    events = frozenset(declared & HOOK_EVENTS)
    unknown = declared - HOOK_EVENTS - TEST_HOOK_EVENTS
    if unknown:
        log.warning(
            "ignoring unknown helm hook events",
            template=template,
            object=str(ObjectRef.from_manifest(obj)),
            events=sorted(unknown),
        )
    if not events:
        return None
    try:
        weight = int(str(annotations.get(HOOK_WEIGHT_ANNOTATION, "0")).strip() or "0")
    except ValueError:
        weight = 0  # Helm treats an unparsable weight as 0
    policies = tuple(
        p.strip()
        for p in str(annotations.get(HOOK_DELETE_POLICY_ANNOTATION, "")).split(",")
        if p.strip()
    ) or ("before-hook-creation",)  # Helm's default when the annotation is absent
    return Hook(
        events=events, weight=weight, delete_policies=policies, template=template, object=obj
    )
