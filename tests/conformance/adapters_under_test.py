"""Start one of our adapters as `meshplane adapter MESH` against kubesim, charts over loopback.

Each mesh names where its chart repository and manifests mirror come from: our own toy charts
under tests/fixtures/<mesh> (always), or the real upstream charts in ../shared/fixtures (opt-in,
skipped when absent).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.kit.testing import AdapterProcess
from kubesim.harness import RunningSim
from tests.adapters.toy_repository import package_toy_repository, toy_mirror
from tests.fixtures_paths import shared_fixtures
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
MESHPLANE = Path(sys.executable).parent / "meshplane"


@dataclass(frozen=True, kw_only=True)
class Sources:
    """Chart repository and manifests mirror directories for one adapter."""

    charts: Path
    mirror: Path


def toy(mesh: str, versions: dict[str, str]) -> Callable[[Path], Sources]:
    """A mesh's toy charts (tests/fixtures/<mesh>/charts) at ``versions`` (chart → app)."""

    def sources(tmp_path: Path) -> Sources:
        charts = package_toy_repository(mesh, tmp_path / f"{mesh}-charts", versions)
        return Sources(charts=charts, mirror=toy_mirror(mesh))

    return sources


TOY_ISTIO = toy("istio", {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
TOY_LINKERD = toy("linkerd", {"1.0.0": "edge-1.0.0", "1.1.0": "edge-1.1.0"})
TOY_CONSUL = toy("consul", {"1.0.0": "1.20.0", "1.1.0": "1.21.0"})

UPSTREAM_ENV = "MESHPLANE_CONFORMANCE_UPSTREAM"
ACCEPT_LOOPBACK_KUBECONFIGS = (
    "--allow-request-kubeconfigs",
    "--allowed-cluster-servers",
    "127.0.0.1",
)
"""Adapter flags admitting request kubeconfigs for kubesim on loopback (what Meshery sends)."""


def upstream(chart_folder: str) -> Callable[[Path], Sources]:
    """The real upstream charts of one mesh, skipped without the fixtures (or with
    ``MESHPLANE_CONFORMANCE_UPSTREAM=0`` for a quicker local run: each takes 10-30 s)."""

    def sources(_: Path) -> Sources:
        if os.environ.get(UPSTREAM_ENV) == "0":
            pytest.skip(f"{UPSTREAM_ENV}=0: the suite over the upstream charts is switched off")
        fixtures = shared_fixtures()
        return Sources(charts=fixtures / "charts" / chart_folder, mirror=fixtures)

    return sources


@contextlib.contextmanager
def running_adapter(
    mesh: str,
    sources: Sources,
    *,
    sim: RunningSim,
    tmp_path: Path,
    serve: ServerFactory,
    extra_args: Sequence[str] = (),
) -> Iterator[AdapterProcess]:
    """`meshplane adapter MESH` on 127.0.0.1:0, managing ``sim``; stopped (SIGTERM) after."""
    args = [
        "--port",
        "0",
        "--kubeconfig",
        str(sim.kubeconfig),
        "--chart-repo",
        serve(sources.charts).url,
        "--manifests-url",
        serve(sources.mirror).url,
        "--state-dir",
        str(tmp_path / f"{mesh}-state"),
        "--cache-dir",
        str(tmp_path / f"{mesh}-cache"),
        "--operation-timeout",
        "60",
        *extra_args,
    ]
    process = AdapterProcess(
        args, tmp_path / f"{mesh}-adapter.log", command=[str(MESHPLANE), "adapter", mesh]
    ).start()
    try:
        yield process
    finally:
        process.stop()
