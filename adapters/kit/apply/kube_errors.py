"""Kubernetes failures turned into `ErrorDetail`s a user can act on.

The API server answers with a `Status` object (reason, message, details.causes); a connection
failure has no answer at all. Either way the user needs the code, the likely cause and the next
step, not an HTTP dump. (What is worth retrying is `serving.retry_policies`' decision.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes.aio.client.exceptions import ApiException

from adapters.kit.model.objects import ObjectRef
from adapters.kit.model.records import ErrorDetail

__all__ = [
    "ApplyError",
    "describe_error",
    "for_mesh",
    "kind_not_installed_detail",
    "not_ready_detail",
    "status_body",
]


class ApplyError(Exception):
    """A failure of the apply engine, carrying what to tell the user."""

    def __init__(self, detail: ErrorDetail) -> None:
        super().__init__(f"{detail.code}: {detail.message}")
        self.detail = detail


def status_body(exc: ApiException) -> dict[str, Any]:
    """The `Status` object the API server sent with an error, or {} when there is none."""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str) or not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _where(ref: ObjectRef | None) -> str:
    return f" {ref}" if ref is not None else ""


def describe_error(
    exc: BaseException,
    *,
    verb: str,
    resource: str,
    ref: ObjectRef | None = None,
    server: str = "",
) -> ErrorDetail:
    """Explain a failed request: ``verb`` on ``resource`` (plural or kind), about ``ref``."""
    if isinstance(exc, ApplyError):
        return exc.detail
    if isinstance(exc, ApiException):
        return _describe_api_error(exc, verb=verb, resource=resource, ref=ref)
    if isinstance(exc, ssl.SSLError | aiohttp.ClientSSLError):
        return ErrorDetail(
            code="CLUSTER_TLS_ERROR",
            message=f"TLS handshake with {server or 'the API server'} failed: {exc}",
            probable_cause="the server certificate does not match the kubeconfig's "
            "certificate-authority data, or the server name differs",
            suggested_remediation="check certificate-authority-data and the server URL in the "
            "kubeconfig (regenerate it from the cluster if it was rotated)",
        )
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError | OSError):
        return ErrorDetail(
            code="CLUSTER_UNREACHABLE",
            message=f"cannot reach the Kubernetes API server {server} to {verb} {resource}"
            f"{_where(ref)}: {exc}",
            probable_cause="the API server is down, or the kubeconfig points at the wrong "
            "address or port",
            suggested_remediation="check the kubeconfig server URL and that the cluster is "
            "running and reachable from the adapter",
        )
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return ErrorDetail(
            code="CLUSTER_TIMEOUT",
            message=f"the API server {server} did not answer in time to {verb} {resource}"
            f"{_where(ref)}",
            probable_cause="the API server is overloaded or the network drops packets",
            suggested_remediation="retry the operation; check API server health and latency",
        )
    return ErrorDetail(
        code="INTERNAL",
        message=f"{verb} {resource}{_where(ref)} failed: {type(exc).__name__}: {exc}",
        probable_cause="an unexpected error in the adapter",
        suggested_remediation="report this with the adapter logs",
    )


def _causes(status: dict[str, Any]) -> list[str]:
    details = status.get("details") or {}
    causes = details.get("causes") if isinstance(details, dict) else None
    found: list[str] = []
    for cause in causes or []:
        if not isinstance(cause, dict):
            continue
        field = cause.get("field") or ""
        text = cause.get("message") or cause.get("reason") or ""
        found.append(f"{field}: {text}" if field else str(text))
    return found


@dataclasses.dataclass(frozen=True, kw_only=True)
class _ApiFailure:
    """One error answer of the API server, and the request it answered."""

    code: int | None
    status: dict[str, Any]
    server_message: str
    reason: str
    verb: str
    resource: str
    ref: ObjectRef | None

    @property
    def subject(self) -> str:
        return f"{self.verb} {self.resource}{_where(self.ref)}"

    @property
    def details(self) -> dict[str, Any]:
        details = self.status.get("details")
        return details if isinstance(details, dict) else {}


def _unauthorized(failure: _ApiFailure) -> ErrorDetail:
    return ErrorDetail(
        code="KUBE_UNAUTHORIZED",
        message=f"the API server rejected our credentials to {failure.subject}: "
        f"{failure.server_message}",
        probable_cause="the kubeconfig token or client certificate is missing, expired or revoked",
        suggested_remediation="refresh the kubeconfig credentials (new token or certificate)",
    )


def _forbidden(failure: _ApiFailure) -> ErrorDetail:
    return _forbidden_detail(failure.subject, failure.server_message)


def _namespace_missing(failure: _ApiFailure) -> ErrorDetail | None:
    if failure.details.get("kind") != "namespaces":
        return None
    return ErrorDetail(
        code="NAMESPACE_NOT_FOUND",
        message=f"cannot {failure.subject}: namespace {failure.details.get('name', '')} does "
        "not exist",
        probable_cause="the namespace was not part of the plan or was deleted meanwhile",
        suggested_remediation="create the namespace or pick an existing one",
    )


def _bound_role_missing(failure: _ApiFailure) -> ErrorDetail | None:
    """Not the kind: RBAC read the role a binding refers to, to check escalation; it is absent."""
    ref = failure.ref
    if ref is None or ref.kind not in _BINDINGS or failure.verb not in ("apply", "create"):
        return None
    if not failure.details.get("name"):
        return None
    return ErrorDetail(
        code="OBJECT_NOT_FOUND",
        message=f"the API server answered not found to {failure.subject}: {failure.server_message}",
        probable_cause=f"the role the {ref.kind} refers to does not exist (yet), and without "
        "`bind` on it the API server must read it to check that the applier holds its "
        "permissions",
        suggested_remediation="create the role first, or grant `bind` on it: " + _ROLE_REMEDY,
    )


def _kind_missing(failure: _ApiFailure) -> ErrorDetail | None:
    ref = failure.ref
    if ref is None or failure.verb not in ("apply", "create", "list"):
        return None
    return ErrorDetail(
        code="KIND_NOT_INSTALLED",
        message=f"the cluster does not serve {ref.api_version} {ref.kind}: "
        f"{failure.server_message}",
        probable_cause=f"the CRD for {ref.kind} is not installed",
        suggested_remediation="install the mesh (or the CRDs it brings) first",
    )


_NOT_FOUND_SHAPES: tuple[Callable[[_ApiFailure], ErrorDetail | None], ...] = (
    _namespace_missing,
    _bound_role_missing,
    _kind_missing,
)
"""What a 404 can mean, most specific first; none matching: the object itself is gone."""


def _not_found(failure: _ApiFailure) -> ErrorDetail:
    for shape in _NOT_FOUND_SHAPES:
        detail = shape(failure)
        if detail is not None:
            return detail
    return ErrorDetail(
        code="OBJECT_NOT_FOUND",
        message=f"{failure.subject}: not found ({failure.server_message})",
        probable_cause="the object was deleted while the operation ran",
        suggested_remediation="retry the operation",
    )


def _conflict(failure: _ApiFailure) -> ErrorDetail:
    return ErrorDetail(
        code="KUBE_CONFLICT",
        message=f"conflict to {failure.subject}: {failure.server_message}",
        probable_cause="another field manager owns these fields, or the object is being deleted",
        suggested_remediation="wait for a pending deletion to finish, or retry with force "
        "(the apply policy's force_conflicts)",
    )


def _invalid(failure: _ApiFailure) -> ErrorDetail:
    return ErrorDetail(
        code="KUBE_INVALID",
        message=f"the API server rejected {failure.subject}: {failure.server_message}",
        probable_cause="; ".join(_causes(failure.status)) or failure.server_message,
        suggested_remediation="fix the listed fields in the chart values or manifest",
    )


def _bad_request(failure: _ApiFailure) -> ErrorDetail:
    return ErrorDetail(
        code="KUBE_BAD_REQUEST",
        message=f"bad request to {failure.subject}: {failure.server_message}",
        probable_cause="; ".join(_causes(failure.status)) or "the manifest is malformed",
        suggested_remediation="check the manifest against the kind's schema",
    )


def _throttled(failure: _ApiFailure) -> ErrorDetail:
    return ErrorDetail(
        code="KUBE_THROTTLED",
        message=f"the API server kept throttling {failure.subject}: {failure.server_message}",
        probable_cause="API priority and fairness is rejecting our requests under load",
        suggested_remediation="retry later, or raise the adapter's FlowSchema priority",
    )


_BY_STATUS: dict[int, Callable[[_ApiFailure], ErrorDetail]] = {
    401: _unauthorized,
    403: _forbidden,
    404: _not_found,
    409: _conflict,
    422: _invalid,
    400: _bad_request,
    429: _throttled,
}
"""The error shapes an HTTP status names by itself."""


def _webhook_unavailable(failure: _ApiFailure) -> ErrorDetail | None:
    webhook = _failed_webhook(failure.server_message)
    if webhook is None:
        return None
    return ErrorDetail(
        code="WEBHOOK_UNAVAILABLE",
        message=f"the API server could not call admission webhook {webhook} to "
        f"{failure.subject}: {failure.server_message}",
        probable_cause=f"webhook {webhook} (failurePolicy Fail) has no serving backend: its "
        "Service's pods are not running, not ready, or not reachable from the API server",
        suggested_remediation="start or repair the webhook's backend (for a mesh: its "
        "control plane, e.g. istiod), or remove the stale webhook configuration",
    )


def _server_error(failure: _ApiFailure) -> ErrorDetail | None:
    if failure.code is None or not 500 <= failure.code <= 599:
        return None
    return ErrorDetail(
        code="KUBE_SERVER_ERROR",
        message=f"the API server failed to {failure.subject}: HTTP {failure.code} "
        f"{failure.server_message}",
        probable_cause="the API server or etcd is unhealthy, or an admission webhook failed",
        suggested_remediation="check API server and webhook health, then retry",
    )


def _describe_api_error(
    exc: ApiException, *, verb: str, resource: str, ref: ObjectRef | None
) -> ErrorDetail:
    status = status_body(exc)
    failure = _ApiFailure(
        code=exc.status,
        status=status,
        server_message=str(status.get("message") or exc.reason or ""),
        reason=str(status.get("reason") or exc.reason or "unknown"),
        verb=verb,
        resource=resource,
        ref=ref,
    )
    by_status = _BY_STATUS.get(failure.code) if failure.code is not None else None
    detail = by_status(failure) if by_status is not None else None
    detail = detail or _webhook_unavailable(failure) or _server_error(failure)
    if detail is not None:
        return detail
    return ErrorDetail(
        code="KUBE_ERROR",
        message=f"{failure.subject} failed: HTTP {failure.code} {failure.server_message}",
        probable_cause=failure.reason,
        suggested_remediation="see the message from the API server",
    )


ROLE_COMMAND = "`meshplane rbac MESH`"
"""How a remediation names the command printing the adapter's ClusterRole (`for_mesh` puts
the mesh in)."""
_ROLE_REMEDY = (
    f"{ROLE_COMMAND} prints the ClusterRole this adapter needs (for the chart versions it "
    "serves): apply it and bind it to the adapter's ServiceAccount"
)
_BINDINGS = frozenset({"RoleBinding", "ClusterRoleBinding"})
# kube-apiserver's words (k8s.io/apiserver endpoints/handlers/responsewriters forbiddenMessage).
_RBAC_DENIAL = re.compile(
    r'User "(?P<user>[^"]{0,200})" cannot (?P<verb>[a-z]+) resource "(?P<resource>[^"]{1,200})" '
    r'in API group "(?P<group>[^"]{0,200})"'
    r'(?: in the namespace "(?P<namespace>[^"]{1,100})"| at the cluster scope)'
)
# ... and RBAC's escalation check (k8s.io/kubernetes pkg/registry/rbac/validation).
_ESCALATION = "is attempting to grant RBAC permissions not currently held:"


def _forbidden_detail(subject: str, server_message: str) -> ErrorDetail:
    """A 403: RBAC's refusal (naming the permission), its escalation check, or admission."""
    denial = _RBAC_DENIAL.search(server_message)
    if denial is not None:
        verb, resource, group = denial["verb"], denial["resource"], denial["group"]
        where = (
            f'in namespace "{denial["namespace"]}"'
            if denial["namespace"]
            else "at the cluster scope"
        )
        missing = f'{verb} on {resource} in API group "{group}" {where}'
        return ErrorDetail(
            code="KUBE_FORBIDDEN",
            message=f"forbidden to {subject}: {denial['user']} lacks the permission {missing} "
            f"(the API server: {server_message})",
            probable_cause=f"the adapter's ClusterRole does not grant {verb} on {resource} "
            f'(apiGroups ["{group}"]), or is not bound to the identity of its kubeconfig',
            suggested_remediation=f'grant verbs ["{verb}"] on resources ["{resource}"] in '
            f'apiGroups ["{group}"]: {_ROLE_REMEDY}',
        )
    _, escalation, held = server_message.partition(_ESCALATION)
    if escalation:
        return ErrorDetail(
            code="KUBE_FORBIDDEN",
            message=f"forbidden to {subject}: a role may grant only permissions its creator "
            f"holds, and the adapter lacks: {' '.join(held.split())[:600]}",
            probable_cause="Kubernetes refuses to let anyone create or update a Role or "
            "ClusterRole granting permissions they do not hold (RBAC escalation prevention); "
            "the adapter's ClusterRole lacks what the mesh's own roles grant",
            suggested_remediation=f"grant the permissions listed: {_ROLE_REMEDY}",
        )
    return ErrorDetail(
        code="KUBE_FORBIDDEN",
        message=f"forbidden to {subject}: {server_message}",
        probable_cause="an admission check refused it (a namespace being deleted, an exhausted "
        "ResourceQuota, a policy), or the adapter lacks a permission",
        suggested_remediation=f"read the API server's message above; for a missing permission, "
        f"{_ROLE_REMEDY}",
    )


def for_mesh(detail: ErrorDetail, mesh: str) -> ErrorDetail:
    """``detail`` with the mesh named in the command that prints the adapter's role."""
    if ROLE_COMMAND not in detail.suggested_remediation:
        return detail
    named = detail.suggested_remediation.replace(ROLE_COMMAND, f"`meshplane rbac {mesh}`")
    return dataclasses.replace(detail, suggested_remediation=named)


_WEBHOOK_CALL_FAILED = "failed calling webhook "


def _failed_webhook(server_message: str) -> str | None:
    """The quoted webhook name in an API server's 'failed calling webhook "NAME"' message."""
    _, found, rest = server_message.partition(_WEBHOOK_CALL_FAILED)
    if not found:
        return None
    name = rest.split(":", 1)[0].strip()
    return name[:120] or '""'


def kind_not_installed_detail(ref: ObjectRef) -> ErrorDetail:
    """Discovery does not list ``ref``'s kind: its CRD (or API group) is missing."""
    return ErrorDetail(
        code="KIND_NOT_INSTALLED",
        message=f"the cluster does not serve {ref.api_version} {ref.kind} (needed for {ref})",
        probable_cause=f"the CRD for {ref.kind} is not installed",
        suggested_remediation="install the mesh (or the CRDs it brings) first",
    )


def not_ready_detail(
    ref: ObjectRef, *, reason: str, message: str, timeout: float | None
) -> ErrorDetail:
    """A component that did not become ready: name the reason the workload reports.

    ``timeout`` is how long we waited; None means the workload failed for good (a Job that
    exhausted its retries) rather than running out of time.
    """
    remedies = {
        "ImagePullBackOff": "check the image name/tag and registry credentials (imagePullSecrets)",
        "ErrImagePull": "check the image name/tag and registry credentials (imagePullSecrets)",
        "CrashLoopBackOff": "read the container logs (kubectl logs --previous) and fix the crash",
        "BackoffLimitExceeded": "read the Job's pod logs and fix what makes it fail",
        "Unschedulable": "add capacity or relax the pod's resource requests and node selectors",
        "ProgressDeadlineExceeded": "describe the pods to see why they do not start",
        "FailedCreate": "pods cannot be created: an admission webhook refused them or is not "
        "reachable (check the webhook configurations and their services' pods), or a "
        "ResourceQuota is exhausted",
    }
    waited = "" if timeout is None else f" after {timeout:g}s"
    return ErrorDetail(
        code="WORKLOAD_FAILED" if timeout is None else "WORKLOAD_NOT_READY",
        message=f"{ref} is not ready{waited}: {reason or 'unknown reason'}"
        + (f" ({message})" if message else ""),
        probable_cause=message or reason or "its pods did not become ready in time",
        suggested_remediation=remedies.get(
            reason,
            "describe the object and its pods (kubectl describe) to see why, or raise the "
            "operation timeout",
        ),
    )
