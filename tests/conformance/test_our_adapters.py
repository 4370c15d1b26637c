"""Our adapters pass the conformance suite (issue 5: "All three of our adapters pass it")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.conformance import CHECK_NAMES, Outcome, SuiteConfig, as_table, run_suite
from kubesim.harness import RunningSim
from tests.conformance.adapters_under_test import (
    TOY_CONSUL,
    TOY_ISTIO,
    TOY_LINKERD,
    ServerFactory,
    Sources,
    running_adapter,
    upstream,
)

MESHES: list[tuple[str, Callable[[Path], Sources]]] = [
    ("istio", TOY_ISTIO),
    ("linkerd", TOY_LINKERD),
    ("consul", TOY_CONSUL),
    ("istio", upstream("istio")),
    ("linkerd", upstream("linkerd")),
    ("consul", upstream("hashicorp")),
]
IDS = [
    f"{mesh}-{kind}-charts"
    for kind in ("toy", "upstream")
    for mesh in ("istio", "linkerd", "consul")
]


@pytest.mark.timeout(110)
@pytest.mark.parametrize(("mesh", "make_sources"), MESHES, ids=IDS)
async def test_adapter_passes_the_suite(
    mesh: str,
    make_sources: Callable[[Path], Sources],
    kubesim: RunningSim,
    tmp_path: Path,
    static_http_server: ServerFactory,
) -> None:
    sources = make_sources(tmp_path)
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
