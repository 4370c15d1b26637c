"""`KitExecutor`, the `ClusterExecutor` every mesh adapter runs with: it leases a session to
the target cluster and hands one `ClusterWork` to the action the operation needs (a check, an
uninstall, an install or upgrade, a preview). Failures come back as a FAILED `ClusterResult`
carrying the `ErrorDetail` the failing layer wrote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.kube_errors import ApplyError, for_mesh
from adapters.kit.apply.sessions import ClusterSessions
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.object_changes import ClusterDryRun
from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.model.renderings import Rendering
from adapters.kit.plan.planner import PlanError, Planner
from adapters.kit.run.executor import previewing
from adapters.kit.run.executor.cluster_work import ClusterWork
from adapters.kit.run.executor.installing import install_or_upgrade
from adapters.kit.run.executor.mesh_status import mesh_status
from adapters.kit.run.executor.uninstalling import uninstall
from adapters.kit.run.executor.validating import validate
from adapters.kit.run.seam import MeshStatus, OperationEmitter, RenderFailed

__all__ = ["KitExecutor"]


class KitExecutor:
    """Carries out catalogue operations of one declaration on any target cluster."""

    def __init__(
        self,
        declaration: MeshDeclaration,
        planner: Planner,
        *,
        kubeconfig: Path | None = None,
        kube_context: str = "",
        apply_concurrency: int = 12,
        on_kubernetes_retry: Callable[[], None] | None = None,
        object_policy: ObjectPolicy | None = None,
    ) -> None:
        self.declaration = declaration
        self.planner = planner
        self.object_policy = object_policy or ObjectPolicy()
        self._sessions = ClusterSessions(
            kubeconfig=kubeconfig, kube_context=kube_context, on_retry=on_kubernetes_retry
        )
        self._concurrency = apply_concurrency

    async def prepare(self, target: ClusterTarget) -> None:
        """Connect to the cluster and read discovery before the first operation needs them."""
        await self._sessions.warm(target)

    def _work(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        session: ClusterSession,
    ) -> ClusterWork:
        return ClusterWork(
            declaration=self.declaration,
            planner=self.planner,
            object_policy=self.object_policy,
            concurrency=self._concurrency,
            spec=spec,
            record=record,
            target=target,
            session=session,
        )

    async def execute(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        emit: OperationEmitter,
    ) -> ClusterResult:
        """Validate, uninstall or install/upgrade; every failure is a FAILED result."""
        try:
            async with self._sessions.lease(target) as session:
                work = self._work(spec, record, target, session)
                if spec.check is not None:
                    return await validate(work, emit)
                if record.delete:
                    return await uninstall(work, emit)
                return await install_or_upgrade(work, emit)
        except (ApplyError, PlanError) as exc:
            detail = for_mesh(exc.detail, self.declaration.mesh)
            emit(Severity.ERROR, detail.message, error=detail)
            return ClusterResult(
                cluster=target.name,
                state=OperationState.FAILED,
                error=detail,
                summary=detail.message,
            )

    async def dry_run(
        self, spec: OperationSpec, record: OperationRecord, target: ClusterTarget
    ) -> ClusterDryRun:
        """What `execute` would change on ``target``, changing nothing (`previewing`).

        Checks (VALIDATE) change nothing. Refusals and failures come back as the result's
        error, the one the real operation would meet.
        """
        if spec.check is not None:
            return ClusterDryRun(cluster=target.name)
        try:
            async with self._sessions.lease(target) as session:
                return await previewing.dry_run(self._work(spec, record, target, session))
        except (ApplyError, PlanError) as exc:
            return ClusterDryRun(cluster=target.name, error=exc.detail)

    async def render(
        self, spec: OperationSpec, record: OperationRecord, target: ClusterTarget
    ) -> Rendering:
        """The objects (labelled as applying labels them) and hooks ``record`` would apply on
        ``target``: planned exactly as `execute` plans, for the cluster's Kubernetes version and
        served APIs. Raises `RenderFailed` (a chart that cannot be fetched or rendered, a
        cluster that cannot be read)."""
        try:
            async with self._sessions.lease(target) as session:
                plan = await self._work(spec, record, target, session).plan()
        except PlanError as exc:
            raise RenderFailed(exc.detail) from exc
        except ApplyError as exc:
            raise RenderFailed(exc.detail, cluster_unreachable=True) from exc
        return previewing.rendering(plan)

    async def status(self, target: ClusterTarget, namespace: str) -> MeshStatus:
        """The install release's state, component readiness and injection namespaces."""
        async with self._sessions.lease(target) as session:
            return await mesh_status(
                session, self.declaration, cluster=target.name, namespace=namespace
            )

    async def aclose(self) -> None:
        """Close the cluster sessions kept between operations."""
        await self._sessions.aclose()
