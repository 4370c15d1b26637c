"""Request parameters an operation accepts, and the kit's own parameters on applying operations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from adapters.kit.model.object_policy import ADOPT_EXISTING
from adapters.kit.model.plans import CREATE_NAMESPACE, PURGE_CRDS, CrdRemoval

__all__ = [
    "ADOPT_EXISTING_PARAMETER",
    "CREATE_NAMESPACE_PARAMETER",
    "PURGE_CRDS_PARAMETER",
    "PURGE_CRDS_VALUES",
    "Parameter",
    "ParameterCheck",
]

ParameterCheck = Callable[[str], str | None]
"""Returns an error message (naming the fix) for a bad value, None when the value is fine."""


@dataclass(frozen=True, kw_only=True)
class Parameter:
    """One request parameter an operation accepts."""

    name: str
    description: str
    required: bool = False
    default: str = ""
    allowed: tuple[str, ...] = ()
    check: ParameterCheck | None = None


ADOPT_EXISTING_PARAMETER = Parameter(
    name=ADOPT_EXISTING,
    description="true lets the operation take over objects that exist but meshplane does not "
    "manage (they are then deleted with the release); cluster-scoped ones and protected "
    "namespaces still need the adapter operator's switches",
    allowed=("true", "false"),
)
"""The kit's parameter on every operation applying objects (`OperationSpec.request_parameters`)."""

CREATE_NAMESPACE_PARAMETER = Parameter(
    name=CREATE_NAMESPACE,
    description="true creates the namespaces the operation applies to when they do not exist "
    "(CLI: --create-namespace); without it a missing namespace fails the operation",
    allowed=("true", "false"),
)
"""The kit's parameter on every operation applying objects or fields."""

PURGE_CRDS_VALUES = tuple(
    choice.value for choice in (CrdRemoval.PURGE, CrdRemoval.KEEP, CrdRemoval.FORCE)
)
PURGE_CRDS_PARAMETER = Parameter(
    name=PURGE_CRDS,
    description="with delete: true also removes the release's CustomResourceDefinitions, refused "
    "while custom resources of them exist; force removes them anyway (CLI: --purge-crds); "
    "unset or false keeps them",
    allowed=PURGE_CRDS_VALUES,
)
"""The kit's parameter on every operation owning objects that can be deleted."""
