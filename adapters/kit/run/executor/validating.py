"""Running an operation's check (VALIDATE): each finding as an event, then one summary."""

from __future__ import annotations

from collections import Counter

from adapters.kit.declare.checks import CheckContext
from adapters.kit.model.records import ClusterResult, ErrorDetail, OperationState, Severity
from adapters.kit.run.executor.cluster_work import ClusterWork
from adapters.kit.run.seam import OperationEmitter

__all__ = ["validate"]


async def validate(work: ClusterWork, emit: OperationEmitter) -> ClusterResult:
    """FAILED when the check found errors (their first is the probable cause), else SUCCEEDED."""
    spec = work.spec
    assert spec.check is not None
    findings = await spec.check(
        CheckContext(
            mesh=work.declaration.mesh,
            namespace=work.namespace,
            parameters=work.record.parameters,
            cluster=work.session,
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
    cluster = work.target.name
    if not errors:
        return ClusterResult(cluster=cluster, state=OperationState.SUCCEEDED, summary=summary)
    detail = ErrorDetail(
        code="VALIDATION_FAILED",
        message=f"{spec.id} found {errors} errors",
        probable_cause=next(f.summary for f in findings if f.severity is Severity.ERROR),
        suggested_remediation="see this operation's ERROR events for each problem and its fix",
    )
    return ClusterResult(
        cluster=cluster, state=OperationState.FAILED, error=detail, summary=summary
    )
