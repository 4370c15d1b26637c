"""What `meshplane up` was asked for: data directory, cluster, meshes, ports, time limits."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from coordinator.sandbox.ports import DEFAULT_PORT_BASE, PortPlan, candidate_meshes

__all__ = ["KUBE_KINDS", "SandboxSettings"]

KUBE_KINDS: tuple[str, ...] = ("sim", "real")
"""``--kube``: kubesim (the default; needs nothing but Python) or the real control plane."""


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    """What `meshplane up` was asked for."""

    data_dir: Path = Path(".data")
    kubeconfig: Path | None = None
    chart_repos: dict[str, str] = field(default_factory=dict)
    mirror: Path | None = None
    port_base: int = DEFAULT_PORT_BASE
    meshes: tuple[str, ...] = field(default_factory=candidate_meshes)
    start_timeout_seconds: float = 60.0
    stop_grace_seconds: float = 10.0
    kubesim_ready_delay: float = 0.2
    kube: str = "sim"
    """Which cluster to start when ``kubeconfig`` is None: "sim" (kubesim) or "real"."""
    real_kube_start_timeout_seconds: float = 300.0
    """How long `meshplane kube up` may take (etcd, API server, controllers, Nodes Ready)."""
    allow_host_network: bool = False
    """Passed to `meshplane kube up`: start outside a loopback-only network namespace."""
    python: str = sys.executable
    max_restarts: int = 5
    """Restarts of one child allowed within ``restart_window_seconds``; one more stops `up`."""
    restart_window_seconds: float = 60.0
    restart_backoff_seconds: float = 0.5
    """Delay before the first restart; doubled for each recent restart, at most 10 s."""

    @property
    def ports(self) -> PortPlan:
        """Where each part listens."""
        return PortPlan(base=self.port_base, meshes=self.meshes)

    @property
    def coordinator_port(self) -> int:
        """Where the coordinator listens."""
        return self.ports.coordinator

    @property
    def kubesim_port(self) -> int:
        """Where the simulated API server listens."""
        return self.ports.kubesim

    def adapter_port(self, mesh: str) -> int:
        """A fixed port per candidate mesh, so addresses survive restarts."""
        return self.ports.adapter(mesh)

    @property
    def logs(self) -> Path:
        """Where each child writes ``<name>.out`` (stdout) and ``<name>.log``."""
        return self.data_dir / "logs"

    @property
    def link_token_file(self) -> Path:
        """The coordinator-adapter link token of this `up` (written when it starts)."""
        return self.data_dir / "link-token"
