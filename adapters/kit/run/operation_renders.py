"""Rendering an admitted request: the manifests it would apply on its first target cluster,
within its deadline and a rendering slot; nothing is recorded."""

from __future__ import annotations

import asyncio

from adapters.kit.model.renderings import Rendering
from adapters.kit.run.request_admission import AdmittedRequest
from adapters.kit.run.request_errors import FailedPrecondition, Unavailable
from adapters.kit.run.runner_context import RunnerContext
from adapters.kit.run.seam import RenderFailed

__all__ = ["render"]


async def render(context: RunnerContext, admitted: AdmittedRequest) -> Rendering:
    """The rendering for ``admitted``'s first target; FAILED_PRECONDITION when the charts
    cannot be rendered, UNAVAILABLE when the cluster cannot be read or the deadline passes."""
    spec = admitted.spec
    record = admitted.pending_record(mesh=context.mesh, operation_id="", previous=None)
    try:
        async with context.rendering, asyncio.timeout(admitted.timeout_seconds):
            return await context.executor.render(spec, record, admitted.targets[0])
    except RenderFailed as failed:
        detail = failed.detail
        text = "; ".join(part for part in (detail.message, detail.suggested_remediation) if part)
        if failed.cluster_unreachable:
            raise Unavailable(f"cannot read the cluster to render {spec.id}: {text}") from None
        raise FailedPrecondition(f"cannot render {spec.id}: {text}") from None
    except TimeoutError:
        raise Unavailable(
            f"rendering {spec.id} did not finish within {admitted.timeout_seconds:g}s; "
            "check the chart repository and the cluster are reachable"
        ) from None
