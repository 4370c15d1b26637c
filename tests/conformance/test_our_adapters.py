"""Our adapters pass the conformance suite (issue 5: "All three of our adapters pass it")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.conformance import CHECK_NAMES, Outcome, SuiteConfig, as_table, run_suite
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.objects import KubeObject
from adapters.kit.process.mesh_registry import known_meshes
from adapters.kit.testing import AdapterClient
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.conformance.adapters_under_test import (
    TOY_CONSUL,
    TOY_ISTIO,
    TOY_LINKERD,
    ServerFactory,
    Sources,
    running_adapter,
    upstream,
)

TOY_SOURCES: dict[str, Callable[[Path], Sources]] = {
    "istio": TOY_ISTIO,
    "linkerd": TOY_LINKERD,
    "consul": TOY_CONSUL,
}
"""Our small charts for each registered mesh (tests/fixtures/<mesh>)."""
UPSTREAM_FOLDERS = {"istio": "istio", "linkerd": "linkerd", "consul": "hashicorp"}
"""Each mesh's chart repository folder in ../shared/fixtures/charts."""

MESHES = [(mesh, kind) for kind in ("toy", "upstream") for mesh in known_meshes()]
IDS = [f"{mesh}-{kind}-charts" for mesh, kind in MESHES]


def sources_of(mesh: str, kind: str) -> Callable[[Path], Sources]:
    """The charts a registered mesh is tested with; a mesh without any fails, saying where."""
    if kind == "toy":
        if mesh not in TOY_SOURCES:
            pytest.fail(
                f"mesh {mesh!r} is registered but has no toy charts: add them to TOY_SOURCES"
            )
        return TOY_SOURCES[mesh]
    if mesh not in UPSTREAM_FOLDERS:
        pytest.fail(
            f"mesh {mesh!r} is registered but has no upstream chart folder in UPSTREAM_FOLDERS"
        )
    return upstream(UPSTREAM_FOLDERS[mesh])


@pytest.mark.timeout(110)
@pytest.mark.parametrize(("mesh", "kind"), MESHES, ids=IDS)
async def test_adapter_passes_the_suite(
    mesh: str,
    kind: str,
    kubesim: RunningSim,
    tmp_path: Path,
    static_http_server: ServerFactory,
) -> None:
    sources = sources_of(mesh, kind)(tmp_path)
    with running_adapter(
        mesh, sources, sim=kubesim, tmp_path=tmp_path, serve=static_http_server
    ) as adapter:
        report = await run_suite(
            adapter.address,
            SuiteConfig(kubeconfig=kubesim.kubeconfig, operation_timeout=60.0),
        )
    table = as_table(report, width=200)
    assert report.passed, table
    assert report.mesh == mesh
    ran = {r.check for r in report.results}
    assert ran == set(CHECK_NAMES), table
    rows = {r.name: r for r in report.results}
    assert rows["install-delete[install]"].outcome is Outcome.PASS
    # Every catalogue entry is a row, and only entries that cannot be deleted are skipped.
    per_operation = [r for r in report.results if r.check == "install-delete"]
    skipped = [r.subject for r in per_operation if r.outcome is Outcome.SKIP]
    assert skipped == [], table
    assert any(r.subject == "custom" for r in per_operation), table


@pytest.mark.timeout(110)
async def test_consul_passes_the_suite_beside_an_installed_linkerd(
    kubesim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    """Linkerd's objects carry the same managed-by label and operation ids as Consul's: the
    suite must not count them as what Consul's install or delete left behind. A third-party
    adapter may name its release after the operation id alone: the mesh label still tells."""
    third_party: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "other-adapter-settings",
            "namespace": "default",
            "labels": {
                "app.kubernetes.io/managed-by": "meshplane",
                "meshplane.io/release": "install",
                "meshplane.io/mesh": "linkerd",
            },
        },
    }
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as session:
        await session.apply(third_party, field_manager="other-adapter")
    with running_adapter(
        "linkerd", TOY_LINKERD(tmp_path), sim=kubesim, tmp_path=tmp_path, serve=static_http_server
    ) as linkerd_process:
        linkerd = AdapterClient(linkerd_process.address)
        try:
            await linkerd.wait_serving()
            await linkerd.run("install", operation_id="linkerd-install")
            with running_adapter(
                "consul",
                TOY_CONSUL(tmp_path),
                sim=kubesim,
                tmp_path=tmp_path,
                serve=static_http_server,
            ) as consul:
                report = await run_suite(
                    consul.address,
                    SuiteConfig(kubeconfig=kubesim.kubeconfig, operation_timeout=60.0),
                )
            status = await linkerd.stub.GetMeshStatus(pb.GetMeshStatusRequest(), timeout=10)
        finally:
            await linkerd.close()
    table = as_table(report, width=200)
    assert report.passed, table
    assert report.mesh == "consul"
    assert {r.name: r.outcome for r in report.results}["install-delete[install]"] is Outcome.PASS
    assert status.installed, "the suite's Consul deletes removed Linkerd's install"
    assert status.components and all(c.ready for c in status.components)
