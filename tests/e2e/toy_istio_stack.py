"""The Istio adapter subprocess on the toy charts and mirror, and what meshplane applied: shared by
the dry-run and template tests (gRPC and CLI)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapters.kit.testing import managed_objects
from kubesim.harness import RunningSim
from tests.adapters.istio.toy_istio import TOY_MIRROR, package_toy_repo
from tests.e2e.mesh_harness import MeshHarness
from tests.plugins.static_http import StaticHttpServer

ServerFactory = Callable[[Path], StaticHttpServer]
CONTROLLER_MADE = frozenset({"Endpoints", "EndpointSlice"})
"""Kinds the cluster's controllers make, copying a Service's labels."""
INVENTORY_PREFIX = "meshplane-release-"


def toy_istio_adapter(sim: RunningSim, tmp_path: Path, serve: ServerFactory) -> MeshHarness:
    """The Istio adapter (not started) on kubesim, the toy charts and the toy mirror."""
    return MeshHarness(
        "istio",
        sim,
        tmp_path,
        charts=serve(package_toy_repo(tmp_path / "charts")),
        manifests=serve(TOY_MIRROR),
    )


async def applied_objects(sim: RunningSim) -> set[tuple[str, str, str]]:
    """(kind, namespace, name) of what meshplane applied: objects labelled as its own, without
    the release inventory Secrets and what controllers copied the labels to."""
    return {
        (kind, namespace, name)
        for kind, namespace, name in await managed_objects(sim.url)
        if kind not in CONTROLLER_MADE
        and not (kind == "Secret" and name.startswith(INVENTORY_PREFIX))
    }
