"""Small object builders mesh declarations share: a namespace label, a namespaced resource.

They hold Kubernetes shape only; what a mesh puts in them (label keys, policy specs) stays in
the mesh folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from adapters.kit.catalogue import PlanContext
from adapters.kit.objects import KubeObject

__all__ = [
    "integer_parameter",
    "namespace_annotations",
    "namespace_labels",
    "namespaced_object",
]


def namespaced_object(
    *,
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str] | None = None,
) -> KubeObject:
    """A namespaced object with a `spec` (policies, routes)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata, "spec": dict(spec)}


def _namespace(name: str, field: str, entries: Mapping[str, str]) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, field: dict(entries)},
    }


def namespace_labels(
    labels: Mapping[str, str],
) -> Callable[[PlanContext], Awaitable[Sequence[KubeObject]]]:
    """Builder setting labels on the request's namespace (pair with `Ownership.FIELDS`)."""

    async def build(ctx: PlanContext) -> Sequence[KubeObject]:
        return [_namespace(ctx.namespace, "labels", labels)]

    return build


def namespace_annotations(
    annotations: Mapping[str, str],
) -> Callable[[PlanContext], Awaitable[Sequence[KubeObject]]]:
    """Builder setting annotations on the request's namespace (pair with `Ownership.FIELDS`)."""

    async def build(ctx: PlanContext) -> Sequence[KubeObject]:
        return [_namespace(ctx.namespace, "annotations", annotations)]

    return build


def integer_parameter(*, minimum: int, maximum: int) -> Callable[[str], str | None]:
    """A `Parameter.check` accepting decimal integers in [minimum, maximum]."""

    def check(value: str) -> str | None:
        text = value.strip()
        if not text.lstrip("-").isdigit():
            return f"{value!r} is not an integer; give a whole number from {minimum} to {maximum}"
        number = int(text)
        if not minimum <= number <= maximum:
            return f"{number} is out of range; give a whole number from {minimum} to {maximum}"
        return None

    return check
