"""One operation's work on one cluster, the context every action of the executor runs over:
the declaration and planner, the object policy, the operation's record and the cluster's
session; planning for that cluster is done here, once, for every action."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.inventory import read_inventory
from adapters.kit.declare import sources
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.object_policy import ObjectPolicy
from adapters.kit.model.plans import ApplyPlan, WaitPolicy
from adapters.kit.model.records import ClusterTarget, OperationRecord
from adapters.kit.plan.planner import PlanError, Planner, StepNote

__all__ = ["ClusterWork", "wait_policy"]

_log = structlog.get_logger(__name__)

_FINISH_SHARE = 0.05
_FINISH_MIN_SECONDS = 1.0
_FINISH_MAX_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class ClusterWork:
    """What an action needs to do ``record``'s operation on ``target`` through ``session``."""

    declaration: MeshDeclaration
    planner: Planner
    object_policy: ObjectPolicy
    concurrency: int
    """Objects applied (or previewed) at once."""
    spec: OperationSpec
    record: OperationRecord
    target: ClusterTarget
    session: ClusterSession

    @property
    def namespace(self) -> str:
        """The namespace the operation works in."""
        return self.record.namespace or self.spec.default_namespace

    @property
    def release(self) -> str:
        """The release the operation installs or removes."""
        return self.declaration.release_of(self.spec, self.record.custom_body)

    def check_namespace(self) -> None:
        """`PlanError` when the object policy refuses the operation's namespace."""
        refusal = self.object_policy.namespace_refusal(self.namespace, self.record.grant)
        if refusal is not None:
            raise PlanError(refusal.detail())

    async def plan(
        self,
        *,
        record: OperationRecord | None = None,
        note: StepNote | None = None,
        installed_version: bool = True,
    ) -> ApplyPlan:
        """The plan of ``record`` (else the operation's) for this cluster's Kubernetes version
        and served APIs; ``installed_version`` plans manifests fetched at the mesh's version
        for the installed one when the record names none."""
        kube_version, api_versions = await self._render_capabilities()
        return await self.planner.plan(
            self.spec,
            record or self.record,
            self.session,
            mesh_version=await self._installed_version() if installed_version else "",
            note=note,
            kube_version=kube_version,
            api_versions=api_versions,
        )

    async def judged_plan(self, note: StepNote | None = None) -> ApplyPlan:
        """The operation's plan for this cluster, passed by the object policy (PlanError if not)."""
        plan = await self.plan(note=note)
        verdict = await self.object_policy.judge(plan, self.session, self.record.grant)
        if verdict.refusal is not None:
            raise PlanError(verdict.refusal.detail())
        return dataclasses.replace(
            plan, wait_policy=wait_policy(self.record), adoption=verdict.adoption
        )

    async def _installed_version(self) -> str:
        """For manifests fetched at the mesh's version: the installed one, if any."""
        if self.record.mesh_version or not any(
            isinstance(s, sources.ManifestSource) for s in self.spec.sources
        ):
            return ""
        status = await read_inventory(
            self.session,
            self.declaration.default_namespace,
            self.declaration.status_release_name,
            mesh=self.declaration.mesh,
        )
        return status.metadata.get("mesh_version", "") if status is not None else ""

    async def _render_capabilities(self) -> tuple[str | None, list[str]]:
        """What the spec's charts render for: the cluster's version and served API versions.

        Charts pick apiVersions by them (a PodDisruptionBudget is ``policy/v1`` on clusters
        that no longer serve ``policy/v1beta1``); specs without charts need neither.
        """
        if not any(isinstance(s, sources.ChartSource) for s in self.spec.sources):
            return None, []
        version, api_versions = await asyncio.gather(
            self.session.server_version(), self.session.api_versions()
        )
        _log.debug(
            "rendering for the cluster",
            cluster=self.session.name,
            kube_version=version,
            api_versions=len(api_versions),
        )
        return version, api_versions


def wait_policy(record: OperationRecord) -> WaitPolicy:
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
