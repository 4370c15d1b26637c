"""What `meshplane template` shows: the manifests an operation would apply, as YAML documents.

The executor fills a `Rendering` from the operation's plan (objects labelled as the apply engine
labels them, then hooks); `Rendering.text` is the multi-document YAML the RenderOperation answer
carries. Secret values never leave the adapter this way: `redacted` replaces them (a chart's
values, or the cluster, may have supplied them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from adapters.kit.model.objects import KubeObject

__all__ = ["RenderedHook", "Rendering", "redacted"]

_SECRET_FIELDS = ("data", "stringData")


def redacted(obj: KubeObject) -> KubeObject:
    """``obj`` with each value of a Secret's ``data`` and ``stringData`` replaced by
    ``<redacted: N bytes>``; other kinds unchanged."""
    if obj.get("kind") != "Secret" or str(obj.get("apiVersion", "")) != "v1":
        return obj
    copy = dict(obj)
    for field in _SECRET_FIELDS:
        values = obj.get(field)
        if isinstance(values, Mapping):
            copy[field] = {
                str(key): f"<redacted: {len(str(value).encode())} bytes>"
                for key, value in values.items()
            }
    return copy


@dataclass(frozen=True, kw_only=True)
class RenderedHook:
    """A hook the operation would run, and when."""

    phases: tuple[str, ...]
    manifest: KubeObject


@dataclass(frozen=True, kw_only=True)
class Rendering:
    """An operation's manifests, resolved for one cluster."""

    release: str
    namespace: str
    mesh_version: str
    objects: tuple[KubeObject, ...]
    hooks: tuple[RenderedHook, ...] = ()

    @property
    def count(self) -> int:
        """Documents in `text`."""
        return len(self.objects) + len(self.hooks)

    def text(self) -> str:
        """Every object, then every hook (after a ``# hook: PHASES`` comment), as YAML
        documents separated by ``---``; Secret values redacted."""
        documents = [_dump(obj) for obj in self.objects]
        documents += [
            f"# hook: {', '.join(hook.phases)}\n{_dump(hook.manifest)}" for hook in self.hooks
        ]
        return "".join(f"---\n{document}" for document in documents)


def _dump(obj: KubeObject) -> str:
    text: Any = yaml.safe_dump(
        redacted(obj), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return str(text)
