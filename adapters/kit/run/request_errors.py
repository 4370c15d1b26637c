"""Why the runner refuses a request: one exception per gRPC status the servicer maps it to.

Each message names the field at fault and the fix, and quotes at most a bounded piece of the
input (`serving.input_quoting`).
"""

from __future__ import annotations

__all__ = [
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "RequestError",
    "Unavailable",
]


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
