"""The seam between the operation runner and the work it runs.

The runner owns dispatch, concurrency, cancellation, timeouts and turning outcomes into events;
an executor does the mesh work on one cluster (plan → apply → wait, or run a check). The runner
depends only on these protocols, so it is tested with small executors and run with the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.object_changes import ClusterDryRun
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    Severity,
)
from adapters.kit.model.renderings import Rendering

__all__ = [
    "ClusterExecutor",
    "ComponentState",
    "MeshStatus",
    "MeshVersionInfo",
    "OperationEmitter",
    "RenderFailed",
    "VersionCatalog",
]


class RenderFailed(Exception):
    """An operation's manifests cannot be rendered: ``detail`` says why and what to do;
    ``cluster_unreachable`` when the target cluster could not be read."""

    def __init__(self, detail: ErrorDetail, *, cluster_unreachable: bool = False) -> None:
        super().__init__(f"{detail.code}: {detail.message}")
        self.detail = detail
        self.cluster_unreachable = cluster_unreachable


class OperationEmitter(Protocol):
    """Emits one event for the running operation on the current cluster."""

    def __call__(
        self,
        severity: Severity,
        summary: str,
        *,
        component: str = "",
        details: str = "",
        error: ErrorDetail | None = None,
    ) -> None:
        """Record the event (never blocks: the event log is in memory and bounded)."""
        ...


@dataclass(frozen=True, kw_only=True)
class ComponentState:
    """Readiness of one component, for GetMeshStatus."""

    kind: str
    name: str
    namespace: str
    ready: bool
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class MeshStatus:
    """What GetMeshStatus reports for one cluster."""

    cluster: str
    installed: bool
    version: str = ""
    namespace: str = ""
    components: tuple[ComponentState, ...] = ()
    injection_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class MeshVersionInfo:
    """One installable mesh version from the chart repository index."""

    version: str
    app_version: str = ""
    prerelease: bool = False
    created: datetime | None = None


class ClusterExecutor(Protocol):
    """Does one operation's work on one cluster."""

    async def execute(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        emit: OperationEmitter,
    ) -> ClusterResult:
        """Carry out the operation; failures are returned as a FAILED result with an error.

        May be cancelled at any await (CancelOperation, timeout, shutdown); it must leave the
        cluster in a state the next run of the same operation converges from.
        """
        ...

    async def dry_run(
        self, spec: OperationSpec, record: OperationRecord, target: ClusterTarget
    ) -> ClusterDryRun:
        """What `execute` would change on ``target``, with every write sent as a server-side
        dry run (nothing changes); failures are returned as the result's error."""
        ...

    async def render(
        self, spec: OperationSpec, record: OperationRecord, target: ClusterTarget
    ) -> Rendering:
        """The manifests `execute` would apply on ``target``, planned the same way; raises
        `RenderFailed` when they cannot be rendered."""
        ...

    async def status(self, target: ClusterTarget, namespace: str) -> MeshStatus:
        """Inspect the mesh in one cluster."""
        ...

    async def prepare(self, target: ClusterTarget) -> None:
        """Get ready to serve operations on ``target`` (connect, read discovery) once the
        adapter is up, so the first operation does not pay for it; never raises."""
        ...


class VersionCatalog(Protocol):
    """The installable versions of the mesh (from the chart repository, never hard-coded)."""

    async def versions(self) -> list[MeshVersionInfo]:
        """Newest first, stable before pre-releases."""
        ...

    async def default_version(self) -> str:
        """The newest stable version."""
        ...
