"""The operation runner: validates requests, records them, and runs them in the background.

Mesh folders only declare operations; dispatch, idempotency, per-cluster parallelism,
cancellation, timeouts, bounded concurrency and turning outcomes into events and journal records
live here, once. The cluster work itself is behind the `ClusterExecutor` seam.

Idempotency follows the Stripe rule: an operation_id names one request. Re-sending it returns
the existing operation (or resumes it when INTERRUPTED); re-sending it with a different body is
rejected with FAILED_PRECONDITION naming the differing field, because silently returning the
old operation would hide that the new request never ran. Fields left empty in the re-sent
request (namespace, mesh_version, parameters with defaults) match whatever was resolved the
first time, so a resume keeps the version the first attempt installed.

Fields that must be parsed to be judged (the custom YAML body, cluster kubeconfigs) are parsed
here too, with the bounded loader of `request_checks`, so bad input is INVALID_ARGUMENT at once
rather than a FAILED operation later. The namespace and kind policy (`object_policy`) judges what
it can from the request alone here too (PERMISSION_DENIED), and the grant it admitted the
operation with is recorded with it for the plan-time judgement.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_changes import (
    DRY_RUN_ANSWER_BYTES,
    ClusterDryRun,
    DryRun,
    bounded_changes,
    dry_run_result,
)
from adapters.kit.model.object_policy import (
    RETIRED_CLUSTER_SCOPED_PARAMETER,
    ObjectPolicy,
    ObjectRefusal,
    retired_parameter_message,
)
from adapters.kit.model.plans import PURGE_CRDS
from adapters.kit.model.records import (
    TERMINAL_STATES,
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationRequest,
    OperationState,
    RequestedCluster,
    Severity,
)
from adapters.kit.model.renderings import Rendering
from adapters.kit.model.request_kubeconfigs import (
    KubeconfigRefused,
    Refusal,
    RequestKubeconfigPolicy,
    judge_kubeconfig,
)
from adapters.kit.run.admission import (
    CustomBodyPolicy,
    FieldProblem,
    check_custom_body,
)
from adapters.kit.run.event_log import EventLog
from adapters.kit.run.events import NewEvent
from adapters.kit.run.journal import OperationJournal, RecordTooLarge, interrupted
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.seam import (
    ClusterExecutor,
    OperationEmitter,
    RenderFailed,
    VersionCatalog,
)
from serving.background_tasks import BackgroundTasks
from serving.input_quoting import quoted
from serving.operation_reuse import custom_body_digest, identity_of, reuse_difference

__all__ = [
    "DEFAULT_CLUSTER",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OperationRunner",
    "PermissionDenied",
    "RequestError",
    "Unavailable",
]

_log = structlog.get_logger(__name__)

DEFAULT_CLUSTER = "default"
OPERATION_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
OPERATION_TIMEOUT = "OPERATION_TIMEOUT"
INTERNAL = "INTERNAL"
PARSING_SLOTS = 2
"""Requests whose YAML is parsed at once; more wait, so large bodies cannot take every thread."""
RENDERING_SLOTS = 2
"""RenderOperation calls rendered at once (chart rendering is CPU work); more wait."""


class RequestError(Exception):
    """A request the runner refuses; the servicer maps each subclass to one gRPC status."""


class InvalidArgument(RequestError):
    """A field is malformed or not acceptable (INVALID_ARGUMENT); the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(RequestError):
    """The operation (catalogue id or operation id) does not exist (NOT_FOUND)."""


class FailedPrecondition(RequestError):
    """The request conflicts with recorded state, e.g. a reused operation_id."""


class PermissionDenied(RequestError):
    """The adapter's operator does not allow what the request asks (PERMISSION_DENIED): a
    request kubeconfig, or an object the namespace and kind policy refuses (the message names
    the object, the rule, and the operator switch that allows it)."""


class Unavailable(RequestError):
    """The adapter cannot serve this now (shutting down, chart repository unreachable)."""


@dataclass(frozen=True, kw_only=True)
class _Resolved:
    """A request after defaults and validation: what the record and the run use."""

    namespace: str
    mesh_version: str
    parameters: Mapping[str, str]
    targets: tuple[ClusterTarget, ...]
    timeout_seconds: float
    grant: PolicyGrant


def _now() -> datetime:
    return datetime.now(UTC)


class OperationRunner:
    """Runs catalogue operations for one mesh; one named background task per operation."""

    def __init__(
        self,
        declaration: MeshDeclaration,
        executor: ClusterExecutor,
        versions: VersionCatalog,
        journal: OperationJournal,
        events: EventLog,
        *,
        default_cluster: ClusterTarget | None = None,
        default_timeout: float = 900.0,
        max_concurrent: int = 4,
        cancel_wait_seconds: float = 10.0,
        metrics: AdapterMetrics | None = None,
        kubeconfig_policy: RequestKubeconfigPolicy | None = None,
        object_policy: ObjectPolicy | None = None,
    ) -> None:
        if default_timeout <= 0:
            raise ValueError("default_timeout must be positive")
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.declaration = declaration
        self._executor = executor
        self._versions = versions
        self._journal = journal
        self._events = events
        self._default_cluster = default_cluster or ClusterTarget(name=DEFAULT_CLUSTER)
        self._default_timeout = default_timeout
        self._cancel_wait = cancel_wait_seconds
        self._metrics = metrics
        self._kubeconfig_policy = kubeconfig_policy or RequestKubeconfigPolicy()
        self._policy = object_policy or ObjectPolicy()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._parsing = asyncio.Semaphore(PARSING_SLOTS)
        self._rendering = asyncio.Semaphore(RENDERING_SLOTS)
        self._tasks = BackgroundTasks(owner=f"{declaration.mesh}-operations")
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stop_reasons: dict[str, OperationState] = {}
        self._started_at: dict[str, float] = {}
        self._accepting = True
        for record in journal.interrupted_on_open:
            self._emit_state(record, Severity.WARNING, f"{record.operation} interrupted")

    @property
    def running(self) -> frozenset[str]:
        """Ids of operations with background work in progress (pending or running)."""
        return frozenset(self._running)

    def get(self, operation_id: str) -> OperationRecord | None:
        """The current record of an operation, or None."""
        return self._journal.get(operation_id)

    # accepting work

    async def submit(self, request: OperationRequest) -> tuple[OperationRecord, bool]:
        """Validate, record and start an operation; returns (record, created) without waiting.

        created is False when the operation_id already named this request and no new run was
        started. Raises `RequestError` subclasses for requests that cannot be accepted.
        """
        self._check_accepting()
        operation_id = request.operation_id or str(uuid.uuid4())
        if not OPERATION_ID.fullmatch(operation_id):
            raise InvalidArgument(
                "operation_id",
                f"{quoted(operation_id)} is not a valid id (1-128 characters of "
                "A-Z a-z 0-9 . _ : -); leave it empty to get a generated one",
            )
        while True:
            existing = self._journal.get(operation_id)
            if existing is not None:
                self._check_same_request(existing, request)
                if existing.state is not OperationState.INTERRUPTED or (
                    operation_id in self._running
                ):
                    return existing, False
            spec = self._spec(request.operation)
            resolved = await self._resolve(spec, request, existing)
            if self._journal.get(operation_id) is not existing:
                continue  # another request for this id was recorded meanwhile: decide again
            self._check_accepting()
            record = self._record(operation_id, spec, request, resolved, existing)
            try:
                self._journal.check_size(record)
            except RecordTooLarge as exc:
                raise InvalidArgument("request", str(exc)) from exc
            self._journal.put(record)
            verb = "resumed" if existing is not None else "accepted"
            self._emit_state(
                record,
                Severity.INFO,
                f"{spec.id}{' (delete)' if record.delete else ''} {verb}, attempt {record.attempt}",
                details=f"requested by {record.username}" if record.username else "",
            )
            task = self._tasks.start(
                f"{operation_id}#{record.attempt}",
                self._run(spec, operation_id, resolved.targets, resolved.timeout_seconds),
            )
            self._running[operation_id] = task
            _log.info(
                "operation.accepted",
                mesh=self.declaration.mesh,
                operation_id=operation_id,
                operation=spec.id,
                attempt=record.attempt,
                clusters=list(record.clusters),
            )
            return record, True

    async def dry_run(self, request: OperationRequest) -> DryRun:
        """Validate ``request`` as `submit` does, then find what it would change on each target
        cluster with server-side dry runs, before returning. Nothing is recorded: no journal
        entry, no events, no operation_id (the request's is ignored).

        Raises `RequestError` subclasses for requests `submit` would refuse; a cluster's dry run
        that fails (a refused write, the deadline) is that cluster's error, and FAILED.
        """
        self._check_accepting()
        spec = self._spec(request.operation)
        resolved = await self._resolve(spec, request, None)
        record = dataclasses.replace(
            self._record("", spec, request, resolved, None),
            state=OperationState.RUNNING,
            start_time=_now(),
            attempt=0,
        )
        found: dict[str, ClusterDryRun] = {}

        async def one(target: ClusterTarget) -> None:
            try:
                found[target.name] = await self._executor.dry_run(spec, record, target)
            except Exception as exc:
                _log.exception("dry_run.cluster_crashed", operation=spec.id, cluster=target.name)
                found[target.name] = ClusterDryRun(
                    cluster=target.name,
                    error=ErrorDetail(
                        code=INTERNAL,
                        message=f"the dry run failed on cluster {quoted(target.name)}: "
                        f"{quoted(exc)}",
                        probable_cause="a bug in the adapter",
                        suggested_remediation="report it with the adapter logs",
                    ),
                )

        async with self._slots:
            try:
                async with asyncio.timeout(resolved.timeout_seconds):
                    async with asyncio.TaskGroup() as group:
                        for target in resolved.targets:
                            group.create_task(one(target), name=f"dry-run@{target.name}")
            except TimeoutError:
                pass
        timed_out = ErrorDetail(
            code=OPERATION_TIMEOUT,
            message=f"the dry run of {spec.id} did not finish within {resolved.timeout_seconds:g}s",
            probable_cause="the Kubernetes API was slow or unreachable",
            suggested_remediation="re-send with a longer timeout (ApplyOperationRequest.timeout)",
        )
        outcomes = [
            found.get(t.name) or ClusterDryRun(cluster=t.name, error=timed_out)
            for t in resolved.targets
        ]
        results = tuple(dry_run_result(outcome) for outcome in outcomes)
        budget = DRY_RUN_ANSWER_BYTES // max(1, len(outcomes))
        clusters = tuple(bounded_changes(outcome, budget) for outcome in outcomes)
        failed = next((r.error for r in results if r.error is not None), None)
        record = dataclasses.replace(
            record,
            state=OperationState.FAILED if failed else OperationState.SUCCEEDED,
            cluster_results=results,
            error=failed,
            end_time=_now(),
        )
        _log.info(
            "dry_run.finished",
            mesh=self.declaration.mesh,
            operation=spec.id,
            state=record.state.value,
            clusters=list(record.clusters),
            changes=sum(len(c.changes) + c.omitted for c in clusters),
        )
        return DryRun(record=record, clusters=clusters)

    async def render(self, request: OperationRequest) -> Rendering:
        """The manifests ``request`` would apply (validated as `submit` validates it; its first
        cluster, else the adapter's, is the one rendered for). Nothing is recorded.

        Raises `RequestError` subclasses: those `submit` raises, FAILED_PRECONDITION when the
        charts cannot be rendered, UNAVAILABLE when the cluster cannot be read.
        """
        self._check_accepting()
        spec = self._spec(request.operation)
        resolved = await self._resolve(spec, request, None)
        record = self._record("", spec, request, resolved, None)
        try:
            async with self._rendering, asyncio.timeout(resolved.timeout_seconds):
                return await self._executor.render(spec, record, resolved.targets[0])
        except RenderFailed as failed:
            detail = failed.detail
            text = "; ".join(
                part for part in (detail.message, detail.suggested_remediation) if part
            )
            if failed.cluster_unreachable:
                raise Unavailable(f"cannot read the cluster to render {spec.id}: {text}") from None
            raise FailedPrecondition(f"cannot render {spec.id}: {text}") from None
        except TimeoutError:
            raise Unavailable(
                f"rendering {spec.id} did not finish within {resolved.timeout_seconds:g}s; "
                "check the chart repository and the cluster are reachable"
            ) from None

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise Unavailable(
                "the adapter is shutting down; send the request again (same operation_id) once "
                "it is back"
            )

    def _spec(self, operation: str) -> OperationSpec:
        spec = self.declaration.operation(operation)
        if spec is None:
            known = ", ".join(s.id for s in self.declaration.operations)
            raise NotFound(
                f"operation: {quoted(operation)} is not in the {self.declaration.mesh} catalogue; "
                f"available: {known} (see ListOperations)"
            )
        return spec

    def _record(
        self,
        operation_id: str,
        spec: OperationSpec,
        request: OperationRequest,
        resolved: _Resolved,
        previous: OperationRecord | None,
    ) -> OperationRecord:
        return OperationRecord(
            operation_id=operation_id,
            operation=spec.id,
            mesh=self.declaration.mesh,
            mesh_version=resolved.mesh_version,
            namespace=resolved.namespace,
            delete=request.delete,
            parameters=dict(resolved.parameters),
            username=request.username or (previous.username if previous else ""),
            state=OperationState.PENDING,
            clusters=tuple(t.name for t in resolved.targets),
            create_time=previous.create_time if previous else _now(),
            attempt=(previous.attempt if previous else 0) + 1,
            custom_body=request.custom_body,
            timeout_seconds=resolved.timeout_seconds,
            grant=resolved.grant,
        )

    # validation

    def _effective_parameters(
        self, spec: OperationSpec, parameters: Mapping[str, str]
    ) -> dict[str, str]:
        effective = {p.name: p.default for p in spec.request_parameters if p.default}
        effective.update(parameters)
        return effective

    def _check_same_request(self, existing: OperationRecord, request: OperationRequest) -> None:
        """Reject a re-used operation_id whose request differs from the recorded one."""
        spec = self.declaration.operation(existing.operation)
        defaults = {} if spec is None else self._effective_parameters(spec, {})
        difference = reuse_difference(
            identity_of(
                existing.mesh,
                existing,
                custom_body_sha256=custom_body_digest(existing.custom_body),
                clusters=existing.clusters,
            ),
            identity_of(
                self.declaration.mesh,
                request,
                custom_body_sha256=custom_body_digest(request.custom_body),
                clusters=tuple(c.name for c in request.clusters),
            ),
            parameter_defaults=defaults,
            default_clusters=(self._default_cluster.name,),
        )
        if difference is not None:
            raise FailedPrecondition(
                f"operation_id {existing.operation_id!r} already names a different request: "
                f"{difference.describe()}; re-send the original request to get (or resume) that "
                "operation, or use a new operation_id"
            )

    async def _resolve(
        self, spec: OperationSpec, request: OperationRequest, previous: OperationRecord | None
    ) -> _Resolved:
        if request.delete and not spec.supports_delete:
            raise InvalidArgument(
                "delete",
                f"operation {spec.id!r} cannot be undone (supports_delete is false in "
                "ListOperations); send it with delete=false",
            )
        namespace = (
            request.namespace or (previous.namespace if previous else "") or spec.default_namespace
        )
        if len(namespace) > 63 or not DNS1123_LABEL.fullmatch(namespace):
            raise InvalidArgument(
                "namespace",
                f"{quoted(namespace)} is not a valid DNS-1123 label (lower-case letters, "
                "digits, '-', "
                "starting and ending with a letter or digit, at most 63 characters)",
            )
        if spec.custom and not request.custom_body.strip():
            raise InvalidArgument(
                "custom_body", f"operation {spec.id!r} applies the YAML documents in custom_body"
            )
        if not spec.custom and request.custom_body:
            raise InvalidArgument(
                "custom_body",
                f"operation {spec.id!r} takes no custom_body; user YAML goes to the custom "
                "operation",
            )
        parameters = self._check_parameters(spec, request.parameters)
        if PURGE_CRDS in request.parameters and not request.delete:
            raise InvalidArgument(
                f"parameters.{PURGE_CRDS}",
                "only applies to a delete (uninstall); remove it, or send delete=true",
            )
        grant = self._policy.grant_for(parameters, admin=request.admin)
        if spec.check is None:
            refusal = self._policy.namespace_refusal(namespace, grant)
            if refusal is not None:
                raise PermissionDenied(f"namespace: {refusal.message}")
        self._check_cluster_names(request)
        if spec.custom:
            # Parsing is CPU work bounded by the size limits; a thread keeps the loop serving.
            async with self._parsing:
                problem = await asyncio.to_thread(
                    self._custom_body_problem, spec, request, namespace, grant
                )
            if isinstance(problem, ObjectRefusal):
                raise PermissionDenied(f"custom_body: {problem.message}")
            if problem is not None:
                raise InvalidArgument(problem.field, problem.message)
        targets = await self._targets(request)
        mesh_version = await self._check_version(
            spec, request.mesh_version or (previous.mesh_version if previous else "")
        )
        timeout = request.timeout_seconds
        if timeout is not None and timeout <= 0:
            raise InvalidArgument("timeout", f"{timeout:g}s must be positive (or unset)")
        return _Resolved(
            namespace=namespace,
            mesh_version=mesh_version,
            parameters=parameters,
            targets=targets,
            timeout_seconds=timeout if timeout is not None else self._default_timeout,
            grant=grant,
        )

    def _custom_body_problem(
        self,
        spec: OperationSpec,
        request: OperationRequest,
        namespace: str,
        grant: PolicyGrant,
    ) -> FieldProblem | ObjectRefusal | None:
        """What is wrong with the custom operation's YAML, if anything."""
        return check_custom_body(
            request.custom_body,
            CustomBodyPolicy(
                namespace=namespace,
                namespace_sent=bool(request.namespace),
                objects=None if request.delete else self._policy,
                grant=grant,
            ),
        )

    def _check_parameters(self, spec: OperationSpec, sent: Mapping[str, str]) -> dict[str, str]:
        accepted = {p.name: p for p in spec.request_parameters}
        if RETIRED_CLUSTER_SCOPED_PARAMETER in sent and RETIRED_CLUSTER_SCOPED_PARAMETER not in (
            accepted
        ):
            raise InvalidArgument(
                f"parameters.{RETIRED_CLUSTER_SCOPED_PARAMETER}", retired_parameter_message()
            )
        for name in sorted(sent):
            if name not in accepted:
                names = ", ".join(sorted(accepted)) or "none"
                raise InvalidArgument(
                    f"parameters.{name}",
                    f"operation {spec.id!r} has no parameter {quoted(name)}; it accepts: {names}",
                )
        effective = self._effective_parameters(spec, sent)
        for parameter in spec.request_parameters:
            value = effective.get(parameter.name)
            if value is None or value == "":
                if parameter.required:
                    raise InvalidArgument(
                        f"parameters.{parameter.name}",
                        f"is required by {spec.id!r}: {parameter.description}",
                    )
                continue
            if parameter.allowed and value not in parameter.allowed:
                raise InvalidArgument(
                    f"parameters.{parameter.name}",
                    f"{quoted(value)} is not one of {', '.join(parameter.allowed)}",
                )
            if parameter.check is not None:
                problem = parameter.check(value)
                if problem:
                    raise InvalidArgument(f"parameters.{parameter.name}", problem)
        if spec.request_check is not None:
            for field, message in spec.request_check(effective):
                raise InvalidArgument(field, message)
        return effective

    async def _check_version(self, spec: OperationSpec, requested: str) -> str:
        if not spec.uses_mesh_version:
            if requested and spec.mesh_versions and requested not in spec.mesh_versions:
                raise InvalidArgument(
                    "mesh_version",
                    f"{quoted(requested)}: operation {spec.id!r} applies to "
                    f"{', '.join(spec.mesh_versions)}",
                )
            return requested
        try:
            available = [v.version for v in await self._versions.versions()]
            version = requested or await self._versions.default_version()
        except Exception as exc:
            _log.warning("operation.versions_unavailable", error=str(exc))
            raise Unavailable(
                f"cannot read the {self.declaration.mesh} chart repository to check "
                f"mesh_version: {exc}; check --chart-repo (or use --mirror for offline installs)"
            ) from exc
        if version not in available:
            shown = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
            raise InvalidArgument(
                "mesh_version",
                f"{quoted(version)} is not in the chart repository; available: {shown or 'none'}",
            )
        if spec.mesh_versions and version not in spec.mesh_versions:
            raise InvalidArgument(
                "mesh_version",
                f"{quoted(version)}: operation {spec.id!r} applies to "
                f"{', '.join(spec.mesh_versions)}",
            )
        return version

    @staticmethod
    def _check_cluster_names(request: OperationRequest) -> None:
        seen: set[str] = set()
        for index, cluster in enumerate(request.clusters):
            if not cluster.name:
                raise InvalidArgument(f"clusters[{index}].name", "every cluster needs a name")
            if cluster.name in seen:
                raise InvalidArgument(
                    f"clusters[{index}].name",
                    f"{quoted(cluster.name)} appears twice; cluster names are unique within a "
                    "request",
                )
            seen.add(cluster.name)

    async def _targets(self, request: OperationRequest) -> tuple[ClusterTarget, ...]:
        if not request.clusters:
            return (self._default_cluster,)
        return tuple(
            [
                await self.cluster_target(cluster, field=f"clusters[{index}]")
                for index, cluster in enumerate(request.clusters)
            ]
        )

    async def cluster_target(self, cluster: RequestedCluster, *, field: str) -> ClusterTarget:
        """The target a request's cluster names: the adapter's own cluster (and context) when it
        sends no kubeconfig, else its kubeconfig judged by `request_kubeconfigs` (``field`` is
        the request's path of the cluster, e.g. ``clusters[0]``).

        Raises `FailedPrecondition` when the adapter accepts no request kubeconfigs,
        `InvalidArgument` for one that is not data-only or unusable, `PermissionDenied` for a
        server the operator did not allow.
        """
        if not cluster.kubeconfig:
            return ClusterTarget(name=cluster.name, context=cluster.context)
        judge = functools.partial(
            judge_kubeconfig,
            cluster.kubeconfig,
            context=cluster.context,
            policy=self._kubeconfig_policy,
            field=f"{field}.kubeconfig",
            context_field=f"{field}.context",
        )
        try:
            if not self._kubeconfig_policy.accept:
                judged = judge()  # refuses before parsing anything
            else:
                # Parsing is CPU work bounded by the size limits; a thread keeps the loop
                # serving.
                async with self._parsing:
                    judged = await asyncio.to_thread(judge)
        except KubeconfigRefused as refused:
            _log.info(
                "request.kubeconfig_refused",
                mesh=self.declaration.mesh,
                cluster=cluster.name[:63],
                field=refused.field,
                reason=refused.reason.value,
            )
            if refused.reason is Refusal.NOT_ACCEPTED:
                raise FailedPrecondition(str(refused)) from None
            if refused.reason is Refusal.SERVER_NOT_ALLOWED:
                raise PermissionDenied(str(refused)) from None
            raise InvalidArgument(refused.field, refused.message) from None
        return ClusterTarget(name=cluster.name, kubeconfig=judged, context=judged.context)

    # running

    async def _run(
        self,
        spec: OperationSpec,
        operation_id: str,
        targets: tuple[ClusterTarget, ...],
        deadline_seconds: float,
    ) -> None:
        results: dict[str, ClusterResult] = {}
        try:
            async with self._slots:
                record = self._update(
                    operation_id,
                    state=OperationState.RUNNING,
                    start_time=_now(),
                    cluster_results=tuple(
                        ClusterResult(cluster=t.name, state=OperationState.RUNNING) for t in targets
                    ),
                )
                self._started_at[operation_id] = asyncio.get_running_loop().time()
                self._emit_state(
                    record, Severity.INFO, f"{spec.id} started on {', '.join(record.clusters)}"
                )
                try:
                    async with asyncio.timeout(deadline_seconds):
                        async with asyncio.TaskGroup() as group:
                            for target in targets:
                                group.create_task(
                                    self._run_cluster(spec, operation_id, target, results),
                                    name=f"{operation_id}@{target.name}",
                                )
                except TimeoutError:
                    self._finish(
                        spec,
                        operation_id,
                        OperationState.FAILED,
                        ErrorDetail(
                            code=OPERATION_TIMEOUT,
                            message=f"{spec.id} did not finish within {deadline_seconds:g}s",
                            probable_cause="a workload did not become ready in time, or the "
                            "Kubernetes API was slow or unreachable",
                            suggested_remediation="look at this operation's events and "
                            "GetMeshStatus for components that are not ready, fix them, then "
                            "re-send with a longer timeout (ApplyOperationRequest.timeout)",
                        ),
                    )
                    return
                self._finish(spec, operation_id, self._overall(results), None)
        except asyncio.CancelledError:
            reason = self._stop_reasons.get(operation_id, OperationState.INTERRUPTED)
            self._finish(spec, operation_id, reason, None)
        except Exception as exc:
            _log.exception("operation.crashed", operation_id=operation_id, operation=spec.id)
            self._finish(
                spec,
                operation_id,
                OperationState.FAILED,
                ErrorDetail(
                    code=INTERNAL,
                    message=f"the adapter failed while running {spec.id}: {quoted(exc)}",
                    probable_cause="a bug in the adapter",
                    suggested_remediation="re-send the same operation_id to retry; if it "
                    "fails again, report it with the adapter logs",
                ),
            )
        finally:
            self._running.pop(operation_id, None)
            self._stop_reasons.pop(operation_id, None)
            self._started_at.pop(operation_id, None)

    async def _run_cluster(
        self,
        spec: OperationSpec,
        operation_id: str,
        target: ClusterTarget,
        results: dict[str, ClusterResult],
    ) -> None:
        record = self._journal.get(operation_id)
        assert record is not None
        try:
            result = await self._executor.execute(
                spec, record, target, self._emitter(record, target.name)
            )
        except Exception as exc:
            _log.exception(
                "operation.cluster_crashed", operation_id=operation_id, cluster=target.name
            )
            result = ClusterResult(
                cluster=target.name,
                state=OperationState.FAILED,
                error=ErrorDetail(
                    code=INTERNAL,
                    message=f"the executor failed on cluster {quoted(target.name)}: {quoted(exc)}",
                    probable_cause="a bug in the adapter",
                    suggested_remediation="re-send the same operation_id to retry; if it "
                    "fails again, report it with the adapter logs",
                ),
            )
        if result.state not in (OperationState.SUCCEEDED, OperationState.FAILED):
            result = dataclasses.replace(
                result,
                state=OperationState.FAILED,
                error=result.error
                or ErrorDetail(
                    code=INTERNAL,
                    message=f"the executor reported {result.state.value} as a final state",
                    probable_cause="a bug in the adapter",
                ),
            )
        result = dataclasses.replace(result, cluster=target.name)
        results[target.name] = result
        current = self._journal.get(operation_id)
        assert current is not None
        current = self._update(
            operation_id,
            cluster_results=tuple(
                result if r.cluster == target.name else r for r in current.cluster_results
            ),
        )
        failed = result.state is OperationState.FAILED
        self._events.append(
            NewEvent(
                severity=Severity.ERROR if failed else Severity.INFO,
                summary=f"{spec.id} {'failed' if failed else 'succeeded'} on {target.name}"
                + (f": {result.summary}" if result.summary else ""),
                operation_id=operation_id,
                operation=spec.id,
                cluster=target.name,
                error=result.error,
                operation_state=current.state,
            )
        )

    def _emitter(self, record: OperationRecord, cluster: str) -> OperationEmitter:
        def emit(
            severity: Severity,
            summary: str,
            *,
            component: str = "",
            details: str = "",
            error: ErrorDetail | None = None,
        ) -> None:
            self._events.append(
                NewEvent(
                    severity=severity,
                    summary=summary,
                    operation_id=record.operation_id,
                    operation=record.operation,
                    details=details,
                    error=error,
                    component=component,
                    cluster=cluster,
                    operation_state=OperationState.RUNNING,
                )
            )

        return emit

    @staticmethod
    def _overall(results: Mapping[str, ClusterResult]) -> OperationState:
        if any(r.state is OperationState.FAILED for r in results.values()):
            return OperationState.FAILED
        return OperationState.SUCCEEDED

    def _finish(
        self,
        spec: OperationSpec,
        operation_id: str,
        state: OperationState,
        error: ErrorDetail | None,
    ) -> None:
        record = self._journal.get(operation_id)
        if record is None or record.state in TERMINAL_STATES:
            return
        if state is OperationState.INTERRUPTED:
            record = interrupted(
                record,
                cause="the adapter was shut down (SIGTERM or a stop request) while the "
                "operation ran",
            )
        else:
            results = tuple(
                r
                if r.state in TERMINAL_STATES
                else dataclasses.replace(
                    r, state=state, error=error if state is OperationState.FAILED else None
                )
                for r in record.cluster_results
            ) or tuple(ClusterResult(cluster=c, state=state, error=error) for c in record.clusters)
            if state is OperationState.FAILED and error is None:
                error = next((r.error for r in results if r.error is not None), None)
            record = dataclasses.replace(
                record, state=state, cluster_results=results, error=error, end_time=_now()
            )
        self._journal.put(record)
        started = self._started_at.get(operation_id)
        if self._metrics is not None:
            self._metrics.operation_state(spec.id, record.state)
            if started is not None:
                self._metrics.operation_duration(
                    spec.id, asyncio.get_running_loop().time() - started
                )
        severity = {
            OperationState.SUCCEEDED: Severity.INFO,
            OperationState.FAILED: Severity.ERROR,
        }.get(record.state, Severity.WARNING)
        self._events.append(
            NewEvent(
                severity=severity,
                summary=f"{spec.id} {record.state.value.lower()}",
                operation_id=operation_id,
                operation=spec.id,
                error=record.error,
                operation_state=record.state,
                details="" if record.error is None else record.error.message,
            )
        )
        _log.info(
            "operation.finished",
            operation_id=operation_id,
            operation=spec.id,
            state=record.state.value,
            code=record.error.code if record.error else "",
        )

    def _update(self, operation_id: str, **changes: object) -> OperationRecord:
        current = self._journal.get(operation_id)
        assert current is not None
        record = dataclasses.replace(current, **changes)  # type: ignore[arg-type]
        self._journal.put(record)
        if self._metrics is not None and "state" in changes:
            self._metrics.operation_state(record.operation, record.state)
        return record

    def _emit_state(
        self, record: OperationRecord, severity: Severity, summary: str, *, details: str = ""
    ) -> None:
        if self._metrics is not None and record.state in (
            OperationState.PENDING,
            OperationState.INTERRUPTED,
        ):
            self._metrics.operation_state(record.operation, record.state)
        self._events.append(
            NewEvent(
                severity=severity,
                summary=summary,
                operation_id=record.operation_id,
                operation=record.operation,
                details=details or ("" if record.error is None else record.error.message),
                error=record.error,
                operation_state=record.state,
            )
        )

    # stopping

    async def cancel(self, operation_id: str) -> OperationRecord:
        """Stop a pending or running operation and return its record (CANCELLED once stopped)."""
        record = self._journal.get(operation_id)
        if record is None:
            raise NotFound(f"operation_id: no operation {quoted(operation_id)} is recorded")
        task = self._running.get(operation_id)
        if task is None or record.state in TERMINAL_STATES:
            return record
        self._stop_reasons[operation_id] = OperationState.CANCELLED
        task.cancel()
        await asyncio.wait({task}, timeout=self._cancel_wait)
        if task.done():
            self._settle(operation_id, OperationState.CANCELLED)
        current = self._journal.get(operation_id)
        assert current is not None
        return current

    def _settle(self, operation_id: str, state: OperationState) -> None:
        """Record a final state for work whose task ended without doing so itself.

        A task cancelled before it first ran never enters `_run`, so nothing else would.
        """
        record = self._journal.get(operation_id)
        spec = self.declaration.operation(record.operation) if record else None
        if spec is not None:
            self._finish(spec, operation_id, state, None)
        self._running.pop(operation_id, None)
        self._stop_reasons.pop(operation_id, None)
        self._started_at.pop(operation_id, None)

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, interrupt running work (recorded INTERRUPTED), flush the event log."""
        self._accepting = False
        for operation_id in list(self._running):
            self._stop_reasons[operation_id] = OperationState.INTERRUPTED
        await self._tasks.stop(grace_seconds=grace_seconds)
        for operation_id in list(self._running):
            # Never started, or ignored cancellation within the grace period: record it anyway.
            self._settle(operation_id, OperationState.INTERRUPTED)
        self._events.flush()
        _log.info("runner.stopped", mesh=self.declaration.mesh)
