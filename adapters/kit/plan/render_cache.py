"""Rendered charts kept on disk, keyed by everything that decides the output.

`RenderedChart` is what planning keeps of one render (install set, hooks of the phases we run,
what uninstall keeps); `RenderCache` stores it so a repeated install costs a JSON load.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import Hook, HookPhase
from adapters.kit.plan.downloading import write_atomically

if TYPE_CHECKING:
    from adapters.kit.plan.rendering import RenderedRelease

__all__ = ["RenderCache", "RenderedChart"]

log = structlog.get_logger(__name__)

_PHASES = {phase.value: phase for phase in HookPhase}


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
        # Read at start-up: the code that renders is the code loaded now, and a server reads
        # no package files later, whatever a request asks for.
        self._renderer = _renderer_identity() if directory is not None else ""

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
