"""Where an operation's objects come from: charts, manifest files, or builders over the request.

Builders and conditions receive a `PlanContext` (the request and read access to the cluster).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.model.objects import KubeObject

__all__ = [
    "ChartSource",
    "Condition",
    "ManifestSource",
    "ObjectsBuilder",
    "ObjectsSource",
    "PlanContext",
    "Source",
    "ValuesBuilder",
]


@dataclass(frozen=True, kw_only=True)
class PlanContext:
    """What a values builder or object builder may look at: the request and the cluster."""

    mesh: str
    operation: str
    namespace: str
    mesh_version: str
    parameters: Mapping[str, str]
    delete: bool
    cluster: ClusterReader
    custom_body: str = ""
    memo: dict[str, Any] = field(default_factory=dict)
    """Per-plan scratch space shared by the builders of one plan (e.g. generated certificates)."""


ValuesBuilder = Callable[[PlanContext], Awaitable[Mapping[str, Any]]]
ObjectsBuilder = Callable[[PlanContext], Awaitable[Sequence[KubeObject]]]
Condition = Callable[[PlanContext], Awaitable[bool]]


@dataclass(frozen=True, kw_only=True)
class ChartSource:
    """A chart from the mesh's chart repository, rendered at the requested mesh version."""

    chart: str
    release: str
    values: ValuesBuilder | None = None
    namespace: str | None = None
    """Namespace to render into; None means the request's namespace."""
    when: Condition | None = None
    """Rendered only when this returns True (e.g. a profile that has this component)."""
    purge_on_delete: bool = False
    """True: delete also removes objects the chart marks `helm.sh/resource-policy: keep` (Helm
    leaves them; e.g. `istioctl uninstall --purge` removes Istio's CRDs)."""


@dataclass(frozen=True, kw_only=True)
class ManifestSource:
    """A manifest file (sample app, add-on) fetched from the adapter's manifest location."""

    file: str
    """Path under a mirror laid out like the shared fixtures, e.g. ``apps/bookinfo.yaml``."""
    upstream: str = ""
    """Path under the upstream location (`MeshDeclaration.manifests_url` at the mesh version),
    e.g. ``samples/bookinfo/platform/kube/bookinfo.yaml``; empty means the same as ``file``."""
    when: Condition | None = None
    """Applied only when this returns True (e.g. the mesh's CRDs exist); None means always."""


@dataclass(frozen=True, kw_only=True)
class ObjectsSource:
    """Objects built from the request (policies, routes, labels)."""

    build: ObjectsBuilder
    when: Condition | None = None


Source = ChartSource | ManifestSource | ObjectsSource
