"""Adapter replicas as the registry reports them: snapshots, states, sources and changes."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from meshplane.adapter.v1 import adapter_pb2 as adapter_pb

__all__ = [
    "Dialer",
    "Listener",
    "RegistrationError",
    "RegistryChange",
    "Replica",
    "ReplicaState",
    "Source",
]


class ReplicaState(enum.Enum):
    """Health as the coordinator sees it; only SERVING replicas receive traffic."""

    CONNECTING = "connecting"
    SERVING = "serving"
    NOT_SERVING = "not_serving"


class Source(enum.Enum):
    """How the coordinator learned about a replica."""

    STATIC = "static"
    DYNAMIC = "dynamic"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True, kw_only=True)
class Replica:
    """A snapshot of one replica; the registry replaces it on every change."""

    address: str
    mesh: str
    source: Source
    state: ReplicaState = ReplicaState.CONNECTING
    adapter_version: str = ""
    contract_version: str = ""
    git_sha: str = ""
    capabilities: tuple[str, ...] = ()
    event_stream_id: str = ""
    last_error: str = ""
    state_change_time: datetime
    operations: tuple[adapter_pb.OperationDescriptor, ...] = ()
    """The adapter's catalogue (ListOperations), refreshed whenever the replica reconnects."""

    @property
    def serving(self) -> bool:
        """True when the replica is in rotation."""
        return self.state is ReplicaState.SERVING


@dataclass(frozen=True, kw_only=True)
class RegistryChange:
    """One change listeners hear about; ``replica`` is the snapshot after (or at removal)."""

    kind: Literal["added", "removed", "state"]
    replica: Replica


class RegistrationError(Exception):
    """A replica cannot be registered or removed; ``code`` is the gRPC status to answer with."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Dialer = Callable[[str], Any]
"""Opens a ``grpc.aio.Channel`` to an address with the coordinator's TLS settings."""

Listener = Callable[[RegistryChange], None]
"""Hears about every change of the registry."""
