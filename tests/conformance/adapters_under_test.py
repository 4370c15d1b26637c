"""Start one of our adapters as `meshplane adapter MESH` against kubesim, charts over loopback.

Each mesh names where its chart repository and manifests mirror come from: our own toy Istio
charts (always), or the real upstream charts in ../shared/fixtures (skipped when absent).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kubesim.harness import RunningSim
from tests.adapters.istio.adapter_process import AdapterProcess
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.fixtures_paths import shared_fixtures
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
MESHPLANE = Path(sys.executable).parent / "meshplane"


@dataclass(frozen=True, kw_only=True)
class Sources:
    """Chart repository and manifests mirror directories for one adapter."""

    charts: Path
    mirror: Path


def toy_istio(tmp_path: Path) -> Sources:
    """Our toy Istio charts (packaged now) and mirror."""
    return Sources(charts=package_toy_repo(tmp_path / "toy-charts"), mirror=TOY_MIRROR)


def upstream(chart_folder: str) -> Callable[[Path], Sources]:
    """The real upstream charts of one mesh (skips the test when the fixtures are absent)."""

    def sources(_: Path) -> Sources:
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
    ]
    process = AdapterProcess(
        args, tmp_path / f"{mesh}-adapter.log", command=[str(MESHPLANE), "adapter", mesh]
    ).start()
    try:
        yield process
    finally:
        process.stop()
