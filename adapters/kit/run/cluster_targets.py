"""The clusters a request runs on: the adapter's own (by default, or by name and context), or a
cluster the request sends a kubeconfig for, judged by `request_kubeconfigs`."""

from __future__ import annotations

import asyncio
import functools

import structlog

from adapters.kit.model.records import ClusterTarget, OperationRequest, RequestedCluster
from adapters.kit.model.request_kubeconfigs import (
    KubeconfigRefused,
    Refusal,
    RequestKubeconfigPolicy,
    judge_kubeconfig,
)
from adapters.kit.run.request_errors import FailedPrecondition, InvalidArgument, PermissionDenied
from serving.input_quoting import quoted

__all__ = ["ClusterTargets", "check_cluster_names"]

_log = structlog.get_logger(__name__)


def check_cluster_names(request: OperationRequest) -> None:
    """Every requested cluster has a name, unique within the request (`InvalidArgument`)."""
    seen: set[str] = set()
    for index, cluster in enumerate(request.clusters):
        if not cluster.name:
            raise InvalidArgument(f"clusters[{index}].name", "every cluster needs a name")
        if cluster.name in seen:
            raise InvalidArgument(
                f"clusters[{index}].name",
                f"{quoted(cluster.name)} appears twice; cluster names are unique within a request",
            )
        seen.add(cluster.name)


class ClusterTargets:
    """Turns requested clusters into targets; kubeconfigs are parsed in a thread while one of
    the ``parsing`` slots is held, so large ones cannot take every thread."""

    def __init__(
        self,
        *,
        mesh: str,
        default: ClusterTarget,
        policy: RequestKubeconfigPolicy,
        parsing: asyncio.Semaphore,
    ) -> None:
        self._mesh = mesh
        self._default = default
        self._policy = policy
        self._parsing = parsing

    async def of(self, request: OperationRequest) -> tuple[ClusterTarget, ...]:
        """The request's targets, in order; the adapter's default cluster when it names none."""
        if not request.clusters:
            return (self._default,)
        return tuple(
            [
                await self.target(cluster, field=f"clusters[{index}]")
                for index, cluster in enumerate(request.clusters)
            ]
        )

    async def target(self, cluster: RequestedCluster, *, field: str) -> ClusterTarget:
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
            policy=self._policy,
            field=f"{field}.kubeconfig",
            context_field=f"{field}.context",
        )
        try:
            if not self._policy.accept:
                judged = judge()  # refuses before parsing anything
            else:
                # Parsing is CPU work bounded by the size limits; a thread keeps the loop
                # serving.
                async with self._parsing:
                    judged = await asyncio.to_thread(judge)
        except KubeconfigRefused as refused:
            raise self._refusal(cluster, refused) from None
        return ClusterTarget(name=cluster.name, kubeconfig=judged, context=judged.context)

    def _refusal(self, cluster: RequestedCluster, refused: KubeconfigRefused) -> Exception:
        _log.info(
            "request.kubeconfig_refused",
            mesh=self._mesh,
            cluster=cluster.name[:63],
            field=refused.field,
            reason=refused.reason.value,
        )
        if refused.reason is Refusal.NOT_ACCEPTED:
            return FailedPrecondition(str(refused))
        if refused.reason is Refusal.SERVER_NOT_ALLOWED:
            return PermissionDenied(str(refused))
        return InvalidArgument(refused.field, refused.message)
