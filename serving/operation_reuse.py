"""What one operation_id names, and when a re-sent request is "the same request".

The Stripe rule, stated once for the adapter runner and the coordinator (its service and its
pass-through): an operation_id names one request. Sending it again returns (or resumes) that
operation; sending it with anything else different is refused (FAILED_PRECONDITION) naming the
first differing field, because answering with the old operation would hide that the new request
never ran.

Compared: mesh, operation, delete, namespace, mesh_version, parameters, custom_body (by SHA-256)
and cluster names. The recorded side holds resolved values (defaults applied), so a namespace or
mesh_version left empty means "as before", parameters are compared after the operation's
defaults fill in what was not sent, and no clusters means the adapter's default cluster.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from serving.input_quoting import quoted

__all__ = [
    "RequestFields",
    "RequestIdentity",
    "ReuseDifference",
    "custom_body_digest",
    "identity_of",
    "reuse_difference",
]

_SHOWN = 80
"""Characters of a differing value a refusal shows."""
"""Characters of a differing value quoted in a message."""


def custom_body_digest(custom_body: str) -> str:
    """SHA-256 hex of the custom YAML ("" when there is none): records keep this, not the body."""
    if not custom_body:
        return ""
    return hashlib.sha256(custom_body.encode("utf-8", errors="surrogatepass")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class RequestIdentity:
    """The fields that make two ApplyOperation requests the same request."""

    mesh: str
    operation: str
    delete: bool = False
    namespace: str = ""
    mesh_version: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    custom_body_sha256: str | None = ""
    """None: not known (a record made from an adapter's answer alone); not compared."""
    clusters: tuple[str, ...] = ()


class RequestFields(Protocol):
    """What a request (a message, a dataclass, a record) offers to be compared."""

    @property
    def operation(self) -> str: ...

    @property
    def delete(self) -> bool: ...

    @property
    def namespace(self) -> str: ...

    @property
    def mesh_version(self) -> str: ...

    @property
    def parameters(self) -> Mapping[str, str]: ...


def identity_of(
    mesh: str,
    request: RequestFields,
    *,
    custom_body_sha256: str | None,
    clusters: tuple[str, ...],
) -> RequestIdentity:
    """The identity of a request as sent (or of a record as resolved)."""
    return RequestIdentity(
        mesh=mesh,
        operation=request.operation,
        delete=request.delete,
        namespace=request.namespace,
        mesh_version=request.mesh_version,
        parameters=dict(request.parameters),
        custom_body_sha256=custom_body_sha256,
        clusters=clusters,
    )


@dataclass(frozen=True, kw_only=True)
class ReuseDifference:
    """The first field in which a re-sent request differs from the recorded one."""

    field: str
    recorded: object
    sent: object

    def describe(self) -> str:
        """``namespace was 'a', this request has 'b'`` (values cut to a readable length)."""
        return (
            f"{self.field} was {quoted(self.recorded, _SHOWN)}, this request has "
            f"{quoted(self.sent, _SHOWN)}"
        )


def reuse_difference(
    recorded: RequestIdentity,
    sent: RequestIdentity,
    *,
    parameter_defaults: Mapping[str, str] | None = None,
    default_clusters: tuple[str, ...] | None = None,
) -> ReuseDifference | None:
    """How ``sent`` differs from the ``recorded`` request of the same operation_id (None: same).

    ``parameter_defaults`` are the operation's defaults (they fill in parameters not sent);
    ``default_clusters`` is what no clusters means (None when the caller cannot know: then no
    clusters matches a recorded single cluster, and the adapter decides).
    """
    if sent.mesh != recorded.mesh:
        return ReuseDifference(field="mesh", recorded=recorded.mesh, sent=sent.mesh)
    if sent.operation != recorded.operation:
        return ReuseDifference(field="operation", recorded=recorded.operation, sent=sent.operation)
    if sent.delete != recorded.delete:
        return ReuseDifference(field="delete", recorded=recorded.delete, sent=sent.delete)
    for name in ("namespace", "mesh_version"):
        value = getattr(sent, name)
        if value and value != getattr(recorded, name):
            return ReuseDifference(field=name, recorded=getattr(recorded, name), sent=value)
    effective = {**(parameter_defaults or {}), **sent.parameters}
    for name in sorted(set(effective) | set(recorded.parameters)):
        if effective.get(name) != recorded.parameters.get(name):
            return ReuseDifference(
                field=f"parameters.{name}",
                recorded=recorded.parameters.get(name),
                sent=effective.get(name),
            )
    if (
        recorded.custom_body_sha256 is not None
        and sent.custom_body_sha256 is not None
        and sent.custom_body_sha256 != recorded.custom_body_sha256
    ):
        return ReuseDifference(
            field="custom_body", recorded="<recorded YAML>", sent="<different YAML>"
        )
    clusters = sent.clusters or default_clusters
    if clusters is None:
        if len(recorded.clusters) > 1:
            return ReuseDifference(
                field="clusters", recorded=list(recorded.clusters), sent="<the default cluster>"
            )
    elif clusters != recorded.clusters:
        return ReuseDifference(
            field="clusters", recorded=list(recorded.clusters), sent=list(clusters)
        )
    return None
