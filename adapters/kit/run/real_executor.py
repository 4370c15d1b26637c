"""The real executor: plan → apply → wait (or check) on one cluster, reported as events.

`KitExecutor` is the `ClusterExecutor` every mesh adapter runs with. It opens a session to the
target cluster, then either runs the spec's check (VALIDATE), uninstalls the release (delete), or
plans the operation and hands the plan to the `Applier`, turning each step of progress into an
event. Failures come back as a FAILED `ClusterResult` carrying the `ErrorDetail` the failing
layer wrote; nothing here knows which mesh it runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.crd_removal import kept_crds_note
from adapters.kit.apply.inventory import read_inventory
from adapters.kit.apply.kube_errors import ApplyError, for_mesh
from adapters.kit.apply.previewer import Previewer
from adapters.kit.apply.release_labels import labelled
from adapters.kit.apply.sessions import ClusterSessions
from adapters.kit.declare import sources
from adapters.kit.declare.checks import CheckContext
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.declare.sources import ChartSource
from adapters.kit.model.object_changes import ClusterDryRun
from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.plans import (
    ApplyOutcome,
    ApplyPlan,
    CrdRemoval,
    Hook,
    Progress,
    ProgressKind,
    WaitPolicy,
)
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.model.renderings import RenderedHook, Rendering
from adapters.kit.plan.chart_repository import ChartRepository, SemVer
from adapters.kit.plan.planner import (
    PlanError,
    Planner,
)
from adapters.kit.run.mesh_status import mesh_status
from adapters.kit.run.seam import MeshStatus, MeshVersionInfo, OperationEmitter, RenderFailed

__all__ = ["ChartVersionCatalog", "KitExecutor", "install_chart"]

log = structlog.get_logger(__name__)

_SEVERITY: dict[ProgressKind, Severity] = {kind: Severity.INFO for kind in ProgressKind}
_SEVERITY[ProgressKind.FAILED] = Severity.ERROR

_DETAILED = frozenset({ProgressKind.FAILED, ProgressKind.KEPT})
"""Steps whose message is worth an event's details: why it failed, why it stays."""
_VERB: dict[ProgressKind, str] = {
    ProgressKind.APPLIED: "applied",
    ProgressKind.UNCHANGED: "unchanged",
    ProgressKind.DELETED: "deleted",
    ProgressKind.PRUNED: "pruned",
    ProgressKind.KEPT: "kept",
    ProgressKind.WAITING: "waiting",
    ProgressKind.READY: "ready",
    ProgressKind.FAILED: "failed",
    ProgressKind.HOOK_COMPLETED: "hook completed",
}


def install_chart(declaration: MeshDeclaration) -> str:
    """The chart whose versions are the mesh's versions: the install release's first chart."""
    for spec in declaration.operations:
        if spec.release_name == declaration.status_release:
            for source in spec.sources:
                if isinstance(source, ChartSource):
                    return source.chart
    raise ValueError(
        f"{declaration.mesh}: the status release {declaration.status_release!r} has no chart"
    )


class ChartVersionCatalog:
    """Installable mesh versions: the install chart's entries in the repository index."""

    def __init__(self, charts: ChartRepository, chart: str) -> None:
        self.charts = charts
        self.chart = chart

    async def versions(self) -> list[MeshVersionInfo]:
        """Newest first, stable before pre-releases (the index's own order)."""
        index = await self.charts.index()
        entries = index.charts.get(self.chart, ())
        return [
            MeshVersionInfo(
                version=entry.version,
                app_version=entry.app_version if entry.app_version != entry.version else "",
                prerelease=not (entry.semver or _UNSTABLE).is_stable,
                created=_timestamp(entry.created),
            )
            for entry in entries
        ]

    async def default_version(self) -> str:
        """The newest stable, non-deprecated version."""
        return (await self.charts.resolve(self.chart)).version


_UNSTABLE = SemVer(major=0, minor=0, patch=0, prerelease=("unknown",))


def _timestamp(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


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
                if spec.check is not None:
                    return await self._validate(spec, record, target, session, emit)
                if record.delete:
                    return await self._delete(spec, record, target, session, emit)
                return await self._apply(spec, record, target, session, emit)
        except (ApplyError, PlanError) as exc:
            detail = for_mesh(exc.detail, self.declaration.mesh)
            emit(Severity.ERROR, detail.message, error=detail)
            return ClusterResult(
                cluster=target.name,
                state=OperationState.FAILED,
                error=detail,
                summary=detail.message,
            )

    # -- validate ---------------------------------------------------------------------------

    async def _validate(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        session: ClusterSession,
        emit: OperationEmitter,
    ) -> ClusterResult:
        assert spec.check is not None
        findings = await spec.check(
            CheckContext(
                mesh=self.declaration.mesh,
                namespace=record.namespace or spec.default_namespace,
                parameters=record.parameters,
                cluster=session,
            )
        )
        for finding in findings:
            emit(
                finding.severity,
                finding.summary,
                component=finding.component,
                details=finding.details,
                error=finding.error,
            )
        counts = Counter(finding.severity for finding in findings)
        errors, warnings = counts[Severity.ERROR], counts[Severity.WARNING]
        passed = counts[Severity.INFO]
        summary = f"{len(findings)} findings: {errors} errors, {warnings} warnings, {passed} passed"
        worst = Severity.ERROR if errors else Severity.WARNING if warnings else Severity.INFO
        emit(worst, f"{spec.id}: {summary}", component="summary")
        if errors:
            detail = ErrorDetail(
                code="VALIDATION_FAILED",
                message=f"{spec.id} found {errors} errors",
                probable_cause=next(f.summary for f in findings if f.severity is Severity.ERROR),
                suggested_remediation="see this operation's ERROR events for each problem and "
                "its fix",
            )
            return ClusterResult(
                cluster=target.name, state=OperationState.FAILED, error=detail, summary=summary
            )
        return ClusterResult(cluster=target.name, state=OperationState.SUCCEEDED, summary=summary)

    # -- install / upgrade ------------------------------------------------------------------

    async def _apply(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        session: ClusterSession,
        emit: OperationEmitter,
    ) -> ClusterResult:
        plan = await self._judged_plan(spec, record, session, emit)
        emit(
            Severity.INFO,
            f"applying {len(plan.objects)} objects as release {plan.namespace}/{plan.release}",
        )
        outcome = await Applier(session, concurrency=self._concurrency).install_or_upgrade(
            plan, _sink(emit)
        )
        return _result(target, outcome, "applied", len(plan.objects))

    async def _judged_plan(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        session: ClusterSession,
        emit: OperationEmitter | None,
    ) -> ApplyPlan:
        """The operation's plan for this cluster, passed by the object policy (PlanError if not)."""
        kube_version, api_versions = await _render_capabilities(spec, session)
        plan = await self.planner.plan(
            spec,
            record,
            session,
            mesh_version=await self._installed_version(spec, record, session),
            note=(lambda text: emit(Severity.INFO, text)) if emit is not None else None,
            kube_version=kube_version,
            api_versions=api_versions,
        )
        verdict = await self.object_policy.judge(plan, session, record.grant)
        if verdict.refusal is not None:
            raise PlanError(verdict.refusal.detail())
        return dataclasses.replace(
            plan, wait_policy=_wait_policy(record), adoption=verdict.adoption
        )

    # -- dry run ----------------------------------------------------------------------------

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
                previewer = Previewer(session, concurrency=self._concurrency)
                if record.delete:
                    namespace = record.namespace or spec.default_namespace
                    refusal = self.object_policy.namespace_refusal(namespace, record.grant)
                    if refusal is not None:
                        raise PlanError(refusal.detail())
                    release = self.declaration.release_of(spec, record.custom_body)
                    preview = await previewer.uninstall(
                        release,
                        namespace,
                        mesh=self.declaration.mesh,
                        crds=CrdRemoval.of(record.parameters),
                    )
                else:
                    plan = await self._judged_plan(spec, record, session, None)
                    preview = await previewer.install_or_upgrade(plan)
        except (ApplyError, PlanError) as exc:
            return ClusterDryRun(cluster=target.name, error=exc.detail)
        return ClusterDryRun(
            cluster=target.name, changes=preview.changes, unchanged=preview.unchanged
        )

    # -- render -----------------------------------------------------------------------------

    async def render(
        self, spec: OperationSpec, record: OperationRecord, target: ClusterTarget
    ) -> Rendering:
        """The objects (labelled as applying labels them) and hooks ``record`` would apply on
        ``target``: planned exactly as `execute` plans, for the cluster's Kubernetes version and
        served APIs. Raises `RenderFailed` (a chart that cannot be fetched or rendered, a
        cluster that cannot be read)."""
        try:
            async with self._sessions.lease(target) as session:
                kube_version, api_versions = await _render_capabilities(spec, session)
                plan = await self.planner.plan(
                    spec,
                    record,
                    session,
                    mesh_version=await self._installed_version(spec, record, session),
                    kube_version=kube_version,
                    api_versions=api_versions,
                )
        except PlanError as exc:
            raise RenderFailed(exc.detail) from exc
        except ApplyError as exc:
            raise RenderFailed(exc.detail, cluster_unreachable=True) from exc

        def mine(obj: KubeObject) -> KubeObject:
            return obj if plan.ownership_fields_only else labelled(obj, plan.release, plan.mesh)

        return Rendering(
            release=plan.release,
            namespace=plan.namespace,
            mesh_version=plan.metadata.get("mesh_version", ""),
            objects=tuple(mine(obj) for obj in plan.objects),
            hooks=tuple(
                RenderedHook(
                    phases=tuple(phase.value for phase in hook.phases),
                    manifest=mine(hook.manifest),
                )
                for hook in plan.hooks
            ),
        )

    async def _installed_version(
        self, spec: OperationSpec, record: OperationRecord, session: ClusterSession
    ) -> str:
        """For manifests fetched at the mesh's version: the installed one, if any."""
        if record.mesh_version or not any(
            isinstance(s, sources.ManifestSource) for s in spec.sources
        ):
            return ""
        status = await read_inventory(
            session,
            self.declaration.default_namespace,
            self.declaration.status_release_name,
            mesh=self.declaration.mesh,
        )
        return status.metadata.get("mesh_version", "") if status is not None else ""

    # -- delete -----------------------------------------------------------------------------

    async def _delete(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        session: ClusterSession,
        emit: OperationEmitter,
    ) -> ClusterResult:
        namespace = record.namespace or spec.default_namespace
        refusal = self.object_policy.namespace_refusal(namespace, record.grant)
        if refusal is not None:
            raise PlanError(refusal.detail())
        release = self.declaration.release_of(spec, record.custom_body)
        hooks = await self._delete_hooks(spec, record, namespace, release, session, emit)
        outcome = await Applier(session, concurrency=self._concurrency).uninstall(
            release,
            namespace,
            _sink(emit),
            mesh=self.declaration.mesh,
            hooks=hooks,
            wait_policy=_wait_policy(record),
            crds=CrdRemoval.of(record.parameters),
        )
        if outcome.noop:
            summary = f"release {namespace}/{release} is not installed; nothing to delete"
            emit(Severity.INFO, summary)
            return ClusterResult(
                cluster=target.name, state=OperationState.SUCCEEDED, summary=summary
            )
        result = _result(target, outcome, "deleted", outcome.deleted)
        if not outcome.crds_kept:
            return result
        note = kept_crds_note(outcome.crds_kept, release)
        emit(Severity.WARNING, note)
        return dataclasses.replace(result, summary=f"{result.summary}; {note}")

    async def _delete_hooks(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        namespace: str,
        release: str,
        session: ClusterSession,
        emit: OperationEmitter,
    ) -> tuple[Hook, ...]:
        """Charts may carry delete hooks: render the installed version to find them."""
        if not any(isinstance(s, ChartSource) for s in spec.sources):
            return ()
        installed = await read_inventory(session, namespace, release, mesh=self.declaration.mesh)
        if installed is None:
            return ()
        version = installed.metadata.get("mesh_version", "")
        kube_version, api_versions = await _render_capabilities(spec, session)
        try:
            plan = await self.planner.plan(
                spec,
                dataclasses.replace(record, mesh_version=version),
                session,
                kube_version=kube_version,
                api_versions=api_versions,
            )
        except PlanError as exc:
            emit(
                Severity.WARNING,
                "cannot render the installed charts; uninstalling without delete hooks",
                details=exc.detail.message,
            )
            return ()
        return plan.hooks

    # -- status -----------------------------------------------------------------------------

    async def status(self, target: ClusterTarget, namespace: str) -> MeshStatus:
        """The install release's state, component readiness and injection namespaces."""
        async with self._sessions.lease(target) as session:
            return await mesh_status(
                session, self.declaration, cluster=target.name, namespace=namespace
            )

    async def aclose(self) -> None:
        """Close the cluster sessions kept between operations."""
        await self._sessions.aclose()


async def _render_capabilities(
    spec: OperationSpec, session: ClusterSession
) -> tuple[str | None, list[str]]:
    """What the spec's charts render for: the cluster's version and served API versions.

    Charts pick apiVersions by them (a PodDisruptionBudget is ``policy/v1`` on clusters that
    no longer serve ``policy/v1beta1``); specs without charts need neither.
    """
    if not any(isinstance(s, ChartSource) for s in spec.sources):
        return None, []
    version, api_versions = await asyncio.gather(session.server_version(), session.api_versions())
    log.debug(
        "rendering for the cluster",
        cluster=session.name,
        kube_version=version,
        api_versions=len(api_versions),
    )
    return version, api_versions


_FINISH_SHARE = 0.05
_FINISH_MIN_SECONDS = 1.0
_FINISH_MAX_SECONDS = 10.0


def _wait_policy(record: OperationRecord) -> WaitPolicy:
    """Waiting gets what is left of the operation's timeout since it started, less a margin
    (5%, 1 to 10 s) to explain and report a failure: a workload that never becomes ready then
    fails the operation with its cause (e.g. its Pods' `Unschedulable` message) before the
    runner's deadline cuts it off as a bare OPERATION_TIMEOUT."""
    default = WaitPolicy()
    timeout = record.timeout_seconds
    if timeout is None or timeout <= 0:
        return default
    elapsed = 0.0
    if record.start_time is not None:
        elapsed = max(0.0, (datetime.now(UTC) - record.start_time).total_seconds())
    margin = min(max(timeout * _FINISH_SHARE, _FINISH_MIN_SECONDS), _FINISH_MAX_SECONDS)
    return dataclasses.replace(default, timeout_seconds=max(0.0, timeout - elapsed - margin))


def _sink(emit: OperationEmitter) -> Callable[[Progress], None]:
    """Each step of applying becomes one event about its component."""

    def sink(progress: Progress) -> None:
        details = progress.message
        if progress.reason:
            details = f"{progress.reason}: {details}" if details else progress.reason
        emit(
            _SEVERITY[progress.kind],
            f"{progress.ref} {_VERB[progress.kind]}",
            component=str(progress.ref),
            details=details if progress.kind in _DETAILED else "",
        )

    return sink


def _result(target: ClusterTarget, outcome: ApplyOutcome, verb: str, total: int) -> ClusterResult:
    if outcome.noop:
        summary = f"no changes: {outcome.unchanged} objects already as planned"
    else:
        summary = (
            f"{outcome.applied} applied, {outcome.unchanged} unchanged, {outcome.deleted} "
            f"deleted, {outcome.ready} ready"
        )
    log.debug("cluster result", cluster=target.name, verb=verb, total=total, summary=summary)
    return ClusterResult(
        cluster=target.name,
        state=OperationState.SUCCEEDED,
        objects_applied=outcome.applied,
        objects_deleted=outcome.deleted,
        objects_unchanged=outcome.unchanged,
        summary=summary,
    )
