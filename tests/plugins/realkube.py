"""The real control plane for `realkube` tests (docs/realkube.md).

``real_kube`` (session) is one control plane (etcd, kube-apiserver, controller manager,
scheduler, kwok with two fake Nodes) shared by every test of the run. It starts only inside a
network namespace with nothing but loopback (`make kube-test` and `make test` run the
`realkube` tests under `unshare --net`) and only when `make kube` built the binaries; otherwise
the tests that use it skip, saying which. ``realkube_unavailable`` gives that reason.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realkube.binaries import DEFAULT_BIN_DIR, MissingBinaries, find_binaries
from realkube.control_plane import ControlPlane, ControlPlaneSettings, running_control_plane
from realkube.network_namespace import loopback_only_reason

BUILD_LOG = DEFAULT_BIN_DIR.parent / "build.log"


def _last_build_failure() -> str:
    try:
        tail = BUILD_LOG.read_text(errors="replace").strip().splitlines()[-3:]
    except OSError:
        return ""
    return f"; the last `make kube` ended with: {' | '.join(tail)[-600:]}" if tail else ""


def realkube_unavailable() -> str | None:
    """Why the real control plane cannot run here, or None when it can."""
    reason = loopback_only_reason()
    if reason is not None:
        return (
            "realkube tests run only in a loopback-only network namespace "
            f"(`make kube-test`): {reason}"
        )
    try:
        find_binaries()
    except MissingBinaries as exc:
        return f"{exc}{_last_build_failure()}"
    return None


def require_realkube() -> None:
    """Skip the calling test when the real control plane cannot run here."""
    reason = realkube_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def real_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One real control plane with two fake Nodes for the whole run; stopped at the end."""
    require_realkube()
    directory: Path = tmp_path_factory.mktemp("realkube")
    settings = ControlPlaneSettings(
        binaries=find_binaries(),
        data_dir=directory / "data",
        kubeconfig_out=directory / "kubeconfig",
        nodes=2,
    )
    with running_control_plane(settings) as plane:
        yield plane


@dataclass(frozen=True, kw_only=True)
class RealCluster:
    """What a test needs of the real cluster, shaped like kubesim's ``RunningSim``."""

    url: str
    kubeconfig: Path


MANAGED = "app.kubernetes.io/managed-by=meshplane"


def _kubectl(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(plane.settings.binaries.kubectl), "--kubeconfig", str(plane.kubeconfig), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def remove_managed_objects(plane: ControlPlane) -> None:
    """Delete whatever meshplane-managed objects a test left (a failed one stops before its
    uninstall), so the next test starts from a clean cluster."""
    kinds = _kubectl(plane, "api-resources", "--verbs=list,delete", "-o", "name").stdout.split()
    if kinds:
        _kubectl(plane, "delete", ",".join(kinds), "-A", "-l", MANAGED, "--wait", "--timeout=240s")


@pytest.fixture
def real_cluster(real_kube: ControlPlane) -> Iterator[RealCluster]:
    """The session's real control plane, for one test; meshplane-managed objects the test
    leaves behind are deleted afterwards."""
    try:
        yield RealCluster(url=real_kube.url, kubeconfig=real_kube.kubeconfig)
    finally:
        remove_managed_objects(real_kube)


REALKUBE_TIMEOUT_SECONDS = 600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A `realkube` test gets at least 600 s: the real control plane is slower than kubesim
    (scheduling, controllers, watch latency), and the machine may be shared."""
    for item in items:
        if item.get_closest_marker("realkube") is None:
            continue
        marker = item.get_closest_marker("timeout")
        current = float(marker.args[0]) if marker is not None and marker.args else 0.0
        if current < REALKUBE_TIMEOUT_SECONDS:
            item.add_marker(pytest.mark.timeout(REALKUBE_TIMEOUT_SECONDS), append=False)
