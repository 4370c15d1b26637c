"""Small object builders mesh declarations share: a namespace label, a namespaced resource.

They hold Kubernetes shape only; what a mesh puts in them (label keys, policy specs) stays in
the mesh folder.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from adapters.kit.declare.sources import PlanContext
from adapters.kit.model.objects import KubeObject
from serving.durations import DurationError, format_duration, parse_duration
from serving.strict_numbers import NumberError, parse_integer

__all__ = [
    "duration_parameter",
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
    """A `Parameter.check` accepting whole numbers in [minimum, maximum] (`parse_integer`)."""

    def check(value: str) -> str | None:
        try:
            parse_integer(value, minimum=minimum, maximum=maximum)
        except NumberError as exc:
            return str(exc)
        return None

    return check


def duration_parameter(*, minimum: float, maximum: float) -> Callable[[str], str | None]:
    """A `Parameter.check` accepting durations (``30s``, ``5m``, ``1h30m``) in [minimum, maximum]
    seconds (`serving.durations.parse_duration`)."""
    accepted = f"give a duration from {format_duration(minimum)} to {format_duration(maximum)}"

    def check(value: str) -> str | None:
        try:
            seconds = parse_duration(value)
        except DurationError as exc:
            return f"{exc}; {accepted}"
        if not minimum <= seconds <= maximum:
            return f"{format_duration(seconds)} is out of range; {accepted}"
        return None

    return check
