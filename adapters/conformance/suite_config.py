"""How to run the conformance suite against one adapter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SuiteConfig"]


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """How to run the suite against one adapter."""

    kubeconfig: Path
    """Kubeconfig of the cluster the adapter manages; the suite reads that cluster with it."""
    kube_context: str = ""
    only: frozenset[str] = frozenset()
    """Check names to run (empty: all)."""
    operation_timeout: float = 300.0
    """Deadline sent with each request (ApplyOperationRequest.timeout); the operation must be
    terminal by then, plus a grace for the adapter to record it (`poll_bound`)."""
    prompt_seconds: float = 2.0
    """ApplyOperation must answer within this."""
    rpc_timeout: float = 15.0
    idle_seconds: float = 0.5
    """A replay is complete when no further event arrives within this."""
    mesh_version: str = ""
    """Mesh version to install (empty: the adapter's default)."""
    send_kubeconfig: bool = False
    """True: name the cluster in each request (Cluster.kubeconfig); False: the adapter's own."""
    run_id: str = ""
    """Prefix of every operation_id and object name the suite creates (empty: random)."""

    @property
    def poll_bound(self) -> float:
        """How long GetOperation is polled for a terminal state."""
        return self.operation_timeout + min(30.0, self.operation_timeout / 2)
