"""Operation records: what the runner keeps about each ApplyOperation, free of protobuf.

The servicer converts requests into `OperationRequest` at the door and converts `OperationRecord`
back into messages; everything between speaks these types.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from adapters.kit.model.grants import NO_GRANT, PolicyGrant
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig

__all__ = [
    "TERMINAL_STATES",
    "ClusterResult",
    "ClusterTarget",
    "ErrorDetail",
    "OperationRecord",
    "OperationRequest",
    "OperationState",
    "RequestedCluster",
    "Severity",
]


class OperationState(enum.Enum):
    """Lifecycle of an operation (mirrors `meshplane.adapter.v1.OperationState`)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"


TERMINAL_STATES: frozenset[OperationState] = frozenset(
    {
        OperationState.SUCCEEDED,
        OperationState.FAILED,
        OperationState.CANCELLED,
        OperationState.INTERRUPTED,
    }
)


class Severity(enum.Enum):
    """Event severity (mirrors `meshplane.adapter.v1.EventSeverity`)."""

    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass(frozen=True, kw_only=True)
class ErrorDetail:
    """A failure, its most likely cause, and what the user should do next."""

    code: str
    message: str
    probable_cause: str = ""
    suggested_remediation: str = ""


@dataclass(frozen=True, kw_only=True)
class RequestedCluster:
    """A cluster as a request names it; its kubeconfig is text nobody has judged yet."""

    name: str
    kubeconfig: str = field(default="", repr=False)
    context: str = ""


@dataclass(frozen=True, kw_only=True)
class ClusterTarget:
    """One cluster an operation runs against: a judged request kubeconfig, or (None) the
    adapter's own kubeconfig and ``context`` within it."""

    name: str
    kubeconfig: JudgedKubeconfig | None = None
    context: str = ""


@dataclass(frozen=True, kw_only=True)
class OperationRequest:
    """A validated-shape request (field values are checked against the catalogue by the runner)."""

    operation_id: str
    operation: str
    mesh_version: str = ""
    namespace: str = ""
    delete: bool = False
    custom_body: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    clusters: tuple[RequestedCluster, ...] = ()
    username: str = ""
    timeout_seconds: float | None = None
    admin: bool = False
    """A trusted coordinator vouches that the caller is in ``meshplane:admins``: the object
    policy grants `grants.ADMIN_GRANT` (never set from the request itself)."""


@dataclass(frozen=True, kw_only=True)
class ClusterResult:
    """Outcome of an operation on one cluster."""

    cluster: str
    state: OperationState
    error: ErrorDetail | None = None
    objects_applied: int = 0
    objects_deleted: int = 0
    objects_unchanged: int = 0
    summary: str = ""


@dataclass(frozen=True, kw_only=True)
class OperationRecord:
    """Everything known about one operation; replaced (never mutated) on each state change."""

    operation_id: str
    operation: str
    mesh: str
    mesh_version: str
    namespace: str
    delete: bool
    parameters: Mapping[str, str]
    username: str
    state: OperationState
    clusters: tuple[str, ...]
    cluster_results: tuple[ClusterResult, ...] = ()
    error: ErrorDetail | None = None
    create_time: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    attempt: int = 0
    custom_body: str = ""
    timeout_seconds: float | None = None
    grant: PolicyGrant = NO_GRANT
    """What the object policy lets this run do beyond its defaults (set at admission from the
    operator's switches and the request; never persisted: a resumed operation is admitted again)."""
