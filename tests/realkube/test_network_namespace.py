"""The loopback-only check reads this process's own namespace (/proc/self/net/dev)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from realkube.network_namespace import interfaces, loopback_only_reason, non_loopback_interfaces

HEADER = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n"
)


def net_dev(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "dev"
    path.write_text(HEADER + "".join(f"{n:>6}: 0 0 0 0 0 0 0 0 0 0\n" for n in names))
    return path


def test_only_loopback_passes(tmp_path: Path) -> None:
    path = net_dev(tmp_path, "lo")
    assert interfaces(path) == ["lo"]
    assert loopback_only_reason(path) is None


def test_other_interfaces_are_named(tmp_path: Path) -> None:
    path = net_dev(tmp_path, "lo", "eth0", "ifb0")
    assert non_loopback_interfaces(path) == ["eth0", "ifb0"]
    reason = loopback_only_reason(path)
    assert reason is not None and "eth0, ifb0" in reason and "--allow-host-network" in reason


def test_unreadable_file_is_a_reason(tmp_path: Path) -> None:
    reason = loopback_only_reason(tmp_path / "missing")
    assert reason is not None and "cannot read" in reason


def test_kube_up_refuses_outside_a_loopback_only_namespace(tmp_path: Path) -> None:
    if loopback_only_reason() is None:
        pytest.skip("this process is already in a loopback-only network namespace")
    kubeconfig = tmp_path / "kubeconfig"
    done = subprocess.run(
        [sys.executable, "-m", "meshplane_cli.main", "kube", "up", "--kubeconfig-out",
         str(kubeconfig), "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "refusing to start" in done.stderr and "--allow-host-network" in done.stderr
    assert not kubeconfig.exists() and not (tmp_path / "data").exists()
