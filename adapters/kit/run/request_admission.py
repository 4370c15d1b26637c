"""Admitting a request: the operation it names, then every field judged and defaulted, so what
the runner records is an `AdmittedRequest` it can run.

Fields that must be parsed to be judged (the custom YAML body, cluster kubeconfigs) are parsed
here too, with the bounded loader of `admission`, so bad input is INVALID_ARGUMENT at once rather
than a FAILED operation later. The namespace and kind policy (`object_policy`) judges what it
can from the request alone here too (PERMISSION_DENIED), and the grant it admitted the operation
with is recorded with it for the plan-time judgement.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy, ObjectRefusal
from adapters.kit.model.plans import PURGE_CRDS
from adapters.kit.model.records import (
    ClusterTarget,
    OperationRecord,
    OperationRequest,
    OperationState,
)
from adapters.kit.run.admission import CustomBodyPolicy, check_custom_body
from adapters.kit.run.cluster_targets import ClusterTargets, check_cluster_names
from adapters.kit.run.parameter_checks import checked_parameters
from adapters.kit.run.request_errors import InvalidArgument, NotFound, PermissionDenied
from adapters.kit.run.runner_settings import RunnerSettings
from adapters.kit.run.seam import VersionCatalog
from adapters.kit.run.version_checks import checked_version
from serving.input_quoting import quoted

__all__ = ["DNS1123_LABEL", "PARSING_SLOTS", "AdmittedRequest", "RequestAdmission"]

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_LABEL_LENGTH = 63
PARSING_SLOTS = 2
"""Requests whose YAML is parsed at once; more wait, so large bodies cannot take every thread."""


@dataclass(frozen=True, kw_only=True)
class AdmittedRequest:
    """A request after defaults and validation: what the record and the run use."""

    spec: OperationSpec
    request: OperationRequest
    namespace: str
    mesh_version: str
    parameters: Mapping[str, str]
    targets: tuple[ClusterTarget, ...]
    timeout_seconds: float
    grant: PolicyGrant

    def pending_record(
        self, *, mesh: str, operation_id: str, previous: OperationRecord | None
    ) -> OperationRecord:
        """The PENDING record of this request's next attempt (``previous`` is the last one)."""
        return OperationRecord(
            operation_id=operation_id,
            operation=self.spec.id,
            mesh=mesh,
            mesh_version=self.mesh_version,
            namespace=self.namespace,
            delete=self.request.delete,
            parameters=dict(self.parameters),
            username=self.request.username or (previous.username if previous else ""),
            state=OperationState.PENDING,
            clusters=tuple(t.name for t in self.targets),
            create_time=previous.create_time if previous else datetime.now(UTC),
            attempt=(previous.attempt if previous else 0) + 1,
            custom_body=self.request.custom_body,
            timeout_seconds=self.timeout_seconds,
            grant=self.grant,
        )


class RequestAdmission:
    """Judges requests for one mesh's catalogue; raises `RequestError` subclasses naming the
    field at fault and the fix."""

    def __init__(
        self, declaration: MeshDeclaration, versions: VersionCatalog, settings: RunnerSettings
    ) -> None:
        self._declaration = declaration
        self._versions = versions
        self._default_timeout = settings.default_timeout
        self._policy = settings.object_policy
        self._parsing = asyncio.Semaphore(PARSING_SLOTS)
        self.clusters = ClusterTargets(
            mesh=declaration.mesh,
            default=settings.default_cluster,
            policy=settings.kubeconfig_policy,
            parsing=self._parsing,
        )

    def spec(self, operation: str) -> OperationSpec:
        """The catalogue's operation ``operation``; `NotFound` listing the others when absent."""
        spec = self._declaration.operation(operation)
        if spec is None:
            known = ", ".join(s.id for s in self._declaration.operations)
            raise NotFound(
                f"operation: {quoted(operation)} is not in the {self._declaration.mesh} "
                f"catalogue; available: {known} (see ListOperations)"
            )
        return spec

    async def admit(
        self, request: OperationRequest, previous: OperationRecord | None
    ) -> AdmittedRequest:
        """``request`` judged and defaulted; fields it leaves empty take ``previous``'s values
        (a resume keeps the namespace and version the first attempt used)."""
        spec = self.spec(request.operation)
        _check_delete(spec, request)
        namespace = _namespace(spec, request, previous)
        _check_custom_body_sent(spec, request)
        parameters = checked_parameters(spec, request.parameters)
        if PURGE_CRDS in request.parameters and not request.delete:
            raise InvalidArgument(
                f"parameters.{PURGE_CRDS}",
                "only applies to a delete (uninstall); remove it, or send delete=true",
            )
        grant = self._grant(spec, request, parameters, namespace)
        check_cluster_names(request)
        if spec.custom:
            await self._check_custom_body(request, namespace, grant)
        targets = await self.clusters.of(request)
        mesh_version = await checked_version(
            spec,
            request.mesh_version or (previous.mesh_version if previous else ""),
            versions=self._versions,
            mesh=self._declaration.mesh,
        )
        return AdmittedRequest(
            spec=spec,
            request=request,
            namespace=namespace,
            mesh_version=mesh_version,
            parameters=parameters,
            targets=targets,
            timeout_seconds=self._timeout(request),
            grant=grant,
        )

    def _grant(
        self,
        spec: OperationSpec,
        request: OperationRequest,
        parameters: Mapping[str, str],
        namespace: str,
    ) -> PolicyGrant:
        """What the request's parameters and caller may do; checks (VALIDATE) only read, so
        only the others are held to the namespace policy."""
        grant = self._policy.grant_for(parameters, admin=request.admin)
        if spec.check is None:
            refusal = self._policy.namespace_refusal(namespace, grant)
            if refusal is not None:
                raise PermissionDenied(f"namespace: {refusal.message}")
        return grant

    async def _check_custom_body(
        self, request: OperationRequest, namespace: str, grant: PolicyGrant
    ) -> None:
        # Parsing is CPU work bounded by the size limits; a thread keeps the loop serving.
        async with self._parsing:
            problem = await asyncio.to_thread(
                check_custom_body,
                request.custom_body,
                _custom_body_policy(request, namespace, grant, self._policy),
            )
        if isinstance(problem, ObjectRefusal):
            raise PermissionDenied(f"custom_body: {problem.message}")
        if problem is not None:
            raise InvalidArgument(problem.field, problem.message)

    def _timeout(self, request: OperationRequest) -> float:
        timeout = request.timeout_seconds
        if timeout is None:
            return self._default_timeout
        if timeout <= 0:
            raise InvalidArgument("timeout", f"{timeout:g}s must be positive (or unset)")
        return timeout


def _check_delete(spec: OperationSpec, request: OperationRequest) -> None:
    if request.delete and not spec.supports_delete:
        raise InvalidArgument(
            "delete",
            f"operation {spec.id!r} cannot be undone (supports_delete is false in "
            "ListOperations); send it with delete=false",
        )


def _namespace(
    spec: OperationSpec, request: OperationRequest, previous: OperationRecord | None
) -> str:
    namespace = (
        request.namespace or (previous.namespace if previous else "") or spec.default_namespace
    )
    if len(namespace) > _DNS1123_LABEL_LENGTH or not DNS1123_LABEL.fullmatch(namespace):
        raise InvalidArgument(
            "namespace",
            f"{quoted(namespace)} is not a valid DNS-1123 label (lower-case letters, "
            "digits, '-', "
            "starting and ending with a letter or digit, at most 63 characters)",
        )
    return namespace


def _check_custom_body_sent(spec: OperationSpec, request: OperationRequest) -> None:
    if spec.custom and not request.custom_body.strip():
        raise InvalidArgument(
            "custom_body", f"operation {spec.id!r} applies the YAML documents in custom_body"
        )
    if not spec.custom and request.custom_body:
        raise InvalidArgument(
            "custom_body",
            f"operation {spec.id!r} takes no custom_body; user YAML goes to the custom operation",
        )


def _custom_body_policy(
    request: OperationRequest, namespace: str, grant: PolicyGrant, objects: ObjectPolicy
) -> CustomBodyPolicy:
    """A delete removes only what the release's inventory holds, whatever the YAML says, so
    its objects are not held to the object policy."""
    return CustomBodyPolicy(
        namespace=namespace,
        namespace_sent=bool(request.namespace),
        objects=None if request.delete else objects,
        grant=grant,
    )
