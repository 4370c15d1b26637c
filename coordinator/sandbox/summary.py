"""What `meshplane up` prints once everything is up: where each part listens, and a first
command to try."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.client.channel import DEFAULT_COORDINATOR

__all__ = ["Listening", "summary"]


@dataclass(frozen=True, kw_only=True)
class Listening:
    """Where a started sandbox's parts listen and keep their files."""

    kube: str
    """"sim" or "real": which cluster `up` started (when ``kubernetes_url`` is set)."""
    kubernetes_url: str
    """"" when `up` was given a kubeconfig instead of starting a cluster."""
    kubeconfig: Path | None
    adapters: Mapping[str, str]
    skipped: Mapping[str, str]
    coordinator_address: str
    data_dir: Path
    admin_token_file: Path
    logs: Path


def _rows(listening: Listening) -> list[tuple[str, str, str]]:
    """(part, address, note) for the cluster, each adapter, the coordinator and the token."""
    rows: list[tuple[str, str, str]] = []
    if listening.kubernetes_url:
        what = "real control plane" if listening.kube == "real" else "kubesim"
        rows.append(("kubernetes", listening.kubernetes_url, f"{what}, {listening.kubeconfig}"))
    else:
        rows.append(("kubernetes", "", f"kubeconfig {listening.kubeconfig}"))
    for mesh, address in listening.adapters.items():
        rows.append((f"{mesh} adapter", address, ""))
    for mesh, reason in listening.skipped.items():
        rows.append((f"{mesh} adapter", "-", f"skipped: {reason}"))
    rows.append(("coordinator", listening.coordinator_address, str(listening.data_dir)))
    rows.append(("admin token", str(listening.admin_token_file), "(meshplane commands use it)"))
    return rows


def summary(listening: Listening) -> str:
    """Where everything listens, and a first command."""
    lines = ["meshplane is up"]
    rows = _rows(listening)
    width = max(len(row[0]) for row in rows)
    address_width = max(len(row[1]) for row in rows)
    for name, address, note in rows:
        lines.append(f"  {name.ljust(width)}  {address.ljust(address_width)}  {note}".rstrip())
    lines.append(f"  logs: {listening.logs}")
    first = next(iter(listening.adapters))
    default_port = DEFAULT_COORDINATOR.rsplit(":", 1)[1]
    hint = (
        ""
        if listening.coordinator_address.endswith(f":{default_port}")
        else f" --coordinator {listening.coordinator_address}"
    )
    lines.append(f"try:  meshplane ops {first}{hint}")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)
