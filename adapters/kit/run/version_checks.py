"""The mesh_version a request runs with: the one it names, else the newest stable one, checked
against the chart repository and the versions its operation applies to."""

from __future__ import annotations

import structlog

from adapters.kit.declare.operations import OperationSpec
from adapters.kit.run.request_errors import InvalidArgument, Unavailable
from adapters.kit.run.seam import VersionCatalog
from serving.input_quoting import quoted

__all__ = ["checked_version"]

_log = structlog.get_logger(__name__)

_SHOWN_VERSIONS = 10
"""Available versions an error message lists at most."""


async def checked_version(
    spec: OperationSpec, requested: str, *, versions: VersionCatalog, mesh: str
) -> str:
    """The version to record for ``spec`` when ``requested`` (maybe empty) is asked for.

    Operations that do not install the mesh keep what was asked (checked against the versions
    they apply to); the others read the repository: `Unavailable` when it cannot be read,
    `InvalidArgument` naming ``mesh_version`` when the version is not there or not theirs.
    """
    if not spec.uses_mesh_version:
        if requested:
            _check_applies(spec, requested)
        return requested
    try:
        available = [v.version for v in await versions.versions()]
        version = requested or await versions.default_version()
    except Exception as exc:
        _log.warning("operation.versions_unavailable", error=str(exc))
        raise Unavailable(
            f"cannot read the {mesh} chart repository to check "
            f"mesh_version: {exc}; check --chart-repo (or use --mirror for offline installs)"
        ) from exc
    if version not in available:
        shown = ", ".join(available[:_SHOWN_VERSIONS]) + (
            ", ..." if len(available) > _SHOWN_VERSIONS else ""
        )
        raise InvalidArgument(
            "mesh_version",
            f"{quoted(version)} is not in the chart repository; available: {shown or 'none'}",
        )
    _check_applies(spec, version)
    return version


def _check_applies(spec: OperationSpec, version: str) -> None:
    if spec.mesh_versions and version not in spec.mesh_versions:
        raise InvalidArgument(
            "mesh_version",
            f"{quoted(version)}: operation {spec.id!r} applies to {', '.join(spec.mesh_versions)}",
        )
