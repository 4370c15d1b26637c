"""A child process of `meshplane up` (what it runs, where it writes, its restarts), and the
error raised when one does not come up."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CLUSTER_CHILDREN", "Child", "SandboxError"]

CLUSTER_CHILDREN = ("kubesim", "kube")
"""Names of the cluster children: ready once they print their kubeconfig line (no gRPC)."""


class SandboxError(RuntimeError):
    """A child did not come up; the message says which and where its log is."""


@dataclass(kw_only=True)
class Child:
    """One started child process and where it writes."""

    name: str
    args: tuple[str, ...]
    process: asyncio.subprocess.Process
    stdout_path: Path
    log_path: Path
    address: str = ""
    detail: str = ""
    restarts: deque[float] = field(default_factory=deque)
    """Loop times of this child's restarts (only those within the window are kept)."""
