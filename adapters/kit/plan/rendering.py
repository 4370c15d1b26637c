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
from dataclasses import dataclass
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
    return await asyncio.to_thread(
        _render_sync,
        chart_path,
        release_name=release_name,
        namespace=namespace,
        values=dict(values or {}),
        is_install=is_install,
        is_upgrade=is_upgrade,
        kube_version=kube_version,
        api_versions=list(api_versions),
    )


def _render_sync(
    chart_path: Path,
    *,
    release_name: str,
    namespace: str,
    values: dict[str, Any],
    is_install: bool,
    is_upgrade: bool,
    kube_version: str | None,
    api_versions: list[str],
) -> RenderedRelease:
    try:
        with helm_python.Chart.load(chart_path) as chart:
            metadata = chart.metadata
            chart_crds = chart.crds if is_install else []
            if kube_version is None and not api_versions:
                manifests = chart.render(
                    values,
                    name=release_name,
                    namespace=namespace,
                    is_install=is_install,
                    is_upgrade=is_upgrade,
                )
            else:
                # The SDK's Python wrapper does not pass kube_version/api_versions through yet,
                # though its native render accepts them; call the native entry point with the
                # same options.
                options: dict[str, Any] = {
                    "name": release_name,
                    "namespace": namespace,
                    "is_install": is_install,
                    "is_upgrade": is_upgrade,
                }
                if kube_version is not None:
                    options["kube_version"] = kube_version
                if api_versions:
                    options["api_versions"] = api_versions
                manifests = json.loads(
                    _native.call_string(
                        "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
                    )
                )
    except helm_python.HelmError as exc:
        raise ChartRenderError(f"cannot render chart {chart_path}: {exc}") from exc
    except TypeError as exc:  # from encoding the values for the native call
        raise ChartRenderError(
            f"values for chart {chart_path} must be JSON-like (mappings, lists, scalars): {exc}"
        ) from exc

    chart_name = str(metadata.get("name", ""))
    notes: list[str] = []
    plain: list[KubeObject] = []
    hook_sources: list[tuple[str, KubeObject]] = []
    skipped_tests: list[str] = []
    for template in sorted(manifests):
        text = manifests[template]
        base = PurePosixPath(template).name
        if base == "NOTES.txt":
            # Helm shows only the top chart's notes.
            if template == f"{chart_name}/templates/NOTES.txt" and text.strip():
                notes.append(text)
            continue
        if base.startswith("_") or not text.strip():
            continue
        for obj in _parse_template(text, template):
            annotations = _annotations(obj)
            if HOOK_ANNOTATION not in annotations:
                plain.append(obj)
                continue
            events = {e.strip() for e in str(annotations[HOOK_ANNOTATION]).split(",") if e.strip()}
            if events and events <= TEST_HOOK_EVENTS:
                skipped_tests.append(str(ObjectRef.from_manifest(obj)))
                continue
            hook_sources.append((template, obj))

    crd_objects: list[KubeObject] = []
    for crd in chart_crds:
        crd_objects.extend(_parse_template(crd["data"], crd["name"]))

    everything = crd_objects + plain + [obj for _, obj in hook_sources]
    scopes = crd_scopes(everything)
    crd_objects = with_default_namespace(crd_objects, namespace, extra_crds=scopes)
    plain = with_default_namespace(plain, namespace, extra_crds=scopes)

    hooks: list[Hook] = []
    for template, raw in hook_sources:
        (obj,) = with_default_namespace([raw], namespace, extra_crds=scopes)
        hook = _hook(template, obj)
        if hook is not None:
            hooks.append(hook)

    kept = {ObjectRef.from_manifest(o).key for o in crd_objects}
    kept |= {
        ObjectRef.from_manifest(o).key
        for o in plain
        if str(_annotations(o).get(RESOURCE_POLICY_ANNOTATION, "")).strip() == "keep"
    }
    release = RenderedRelease(
        release_name=release_name,
        namespace=namespace,
        chart_name=chart_name,
        chart_version=str(metadata.get("version", "")),
        app_version=str(metadata.get("appVersion", "")),
        objects=tuple(sort_for_install(crd_objects + plain)),
        hooks=tuple(hooks),
        kept_keys=frozenset(kept),
        skipped_test_hooks=tuple(skipped_tests),
        notes="".join(notes),
    )
    log.debug(
        "chart rendered",
        chart=chart_name,
        version=release.chart_version,
        release=release_name,
        namespace=namespace,
        objects=len(release.objects),
        hooks=len(release.hooks),
        skipped_test_hooks=len(skipped_tests),
    )
    return release


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
