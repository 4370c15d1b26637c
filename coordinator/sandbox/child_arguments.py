"""The `meshplane` command line of each child of `meshplane up`, from its settings, and the
line the cluster child prints once it listens.

Adapters accept kubeconfigs in requests only for the sandbox's own cluster
(``--allowed-cluster-servers``), and none when `up` was given ``--kubeconfig``; they serve only a
caller with the link token, which the coordinator is given too.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.sandbox.settings import SandboxSettings

__all__ = ["ClusterCommand", "adapter_arguments", "cluster_command", "coordinator_arguments"]

_KUBESIM_READY = "kubesim serving at "
"""The line kubesim prints once it listens, before its URL."""
_REAL_KUBE_READY = "kube-apiserver serving at "
"""The line `meshplane kube up` prints once its control plane is usable."""


@dataclass(frozen=True, kw_only=True)
class ClusterCommand:
    """How to start the sandbox's cluster child, and how to tell it is ready."""

    name: str
    args: tuple[str, ...]
    state: Path
    """Its directory; the kubeconfig is written there."""
    ready_prefix: str
    """It prints this, then its API server's URL, once it listens."""
    note: str
    """How the summary describes it, before the kubeconfig's path."""
    within: float
    """How long it may take to be ready."""

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig it writes (then prints a ``kubeconfig:`` line)."""
        return self.state / "kubeconfig"

    def url(self, line: str) -> str | None:
        """The API server's URL when ``line`` is the ready line, else None."""
        return line.removeprefix(self.ready_prefix) if line.startswith(self.ready_prefix) else None


def _kubesim_arguments(settings: SandboxSettings, state: Path) -> list[str]:
    args = ["kubesim", "--port", str(settings.kubesim_port)]
    args += ["--kubeconfig-out", str(state / "kubeconfig")]
    args += ["--state-file", str(state / "state.json")]
    return [*args, "--ready-delay", str(settings.kubesim_ready_delay)]


def _real_kube_arguments(settings: SandboxSettings, state: Path) -> list[str]:
    args = ["kube", "up", "--kubeconfig-out", str(state / "kubeconfig")]
    args += ["--data-dir", str(state), "--port", str(settings.kubesim_port)]
    return args + (["--allow-host-network"] if settings.allow_host_network else [])


def cluster_command(settings: SandboxSettings) -> ClusterCommand:
    """`meshplane kubesim`, or with ``kube="real"`` `meshplane kube up`, on the sandbox's port,
    kept in the data directory."""
    real = settings.kube == "real"
    name = "kube" if real else "kubesim"
    state = settings.data_dir / name
    arguments = _real_kube_arguments if real else _kubesim_arguments
    return ClusterCommand(
        name=name,
        args=tuple(arguments(settings, state)),
        state=state,
        ready_prefix=_REAL_KUBE_READY if real else _KUBESIM_READY,
        note="real control plane, " if real else "",
        within=settings.real_kube_start_timeout_seconds if real else settings.start_timeout_seconds,
    )


def adapter_arguments(
    settings: SandboxSettings, mesh: str, *, kubeconfig: Path, kubernetes_url: str
) -> list[str]:
    """`meshplane adapter MESH` on its fixed port; ``kubernetes_url`` is the sandbox's own
    cluster ("" when `up` was given a kubeconfig: then requests may name no cluster)."""
    data_dir = settings.data_dir
    args = ["adapter", mesh, "--port", str(settings.adapter_port(mesh))]
    args += ["--kubeconfig", str(kubeconfig), "--state-dir", str(data_dir / "adapters" / mesh)]
    args += ["--cache-dir", str(data_dir / "cache")]
    args += ["--coordinator-token-file", str(settings.link_token_file)]
    if mesh in settings.chart_repos:
        args += ["--chart-repo", settings.chart_repos[mesh]]
    if settings.mirror is not None:
        args += ["--mirror", str(settings.mirror)]
    if kubernetes_url:
        # Requests may name the sandbox's own kubesim in a kubeconfig (the conformance
        # suite's --send-kubeconfig does), and no other server.
        server = urllib.parse.urlsplit(kubernetes_url).netloc
        args += ["--allow-request-kubeconfigs", "--allowed-cluster-servers", server]
    return args


def coordinator_arguments(
    settings: SandboxSettings, *, adapters: Mapping[str, str], token_file: Path
) -> list[str]:
    """`meshplane coordinator` with the started adapters, the link token and the admin's token."""
    args = ["coordinator", "--port", str(settings.coordinator_port)]
    args += ["--data-dir", str(settings.data_dir / "coordinator")]
    args += ["--adapter-token-file", str(settings.link_token_file)]
    args += ["--token-auth-file", str(token_file)]
    for mesh, address in adapters.items():
        args += ["--adapter", f"{mesh}={address}"]
    return args
