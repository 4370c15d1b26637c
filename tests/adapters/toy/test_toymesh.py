"""The toy adapter of docs/writing-an-adapter.md passes the conformance suite.

The test packages the toy chart (tests/fixtures/toy/toymesh) at two versions into a chart
repository with an index, serves it over loopback, runs the adapter as an integrator would
(`meshplane adapter tests.adapters.toy.toymesh:DECLARATION`) and runs the suite against it, both
from Python and as `meshplane conformance`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc.aio
import helm_python
import pytest
import yaml

from adapters.conformance import CHECK_NAMES, Outcome, SuiteConfig, as_table, run_suite
from adapters.conformance import cli as conformance_cli
from adapters.kit.testing import AdapterProcess, managed_objects
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving.logging_setup import reset_logging
from tests.fixtures_paths import OWN_FIXTURES, PROJECT_ROOT
from tests.kit.judged_kubeconfigs import accepting_flags
from tests.plugins.static_http import StaticHttpServer

TOY_CHART = OWN_FIXTURES / "toy" / "toymesh"
VERSIONS = ("0.1.0", "0.2.0")
MESHPLANE = Path(sys.executable).parent / "meshplane"


def chart_repository(repo: Path) -> Path:
    """Package the toy chart at each version and write the index a Helm repository serves."""
    repo.mkdir(parents=True, exist_ok=True)
    entries = []
    for version in VERSIONS:
        archive = Path(
            helm_python.package(TOY_CHART, destination=repo, version=version, app_version=version)
        )
        entries.append(
            {
                "apiVersion": "v2",
                "name": "toymesh",
                "version": version,
                "appVersion": version,
                "digest": hashlib.sha256(archive.read_bytes()).hexdigest(),
                "created": "2026-01-01T00:00:00Z",
                "urls": [archive.name],
            }
        )
    index = {"apiVersion": "v1", "entries": {"toymesh": entries}}
    (repo / "index.yaml").write_text(yaml.safe_dump(index), encoding="utf-8")
    return repo


@pytest.fixture(scope="module")
def toymesh(
    kubesim_module: RunningSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdapterProcess]:
    """`meshplane adapter tests.adapters.toy.toymesh:DECLARATION` managing kubesim (one per
    module: every suite run leaves the cluster as it found it)."""
    tmp_path = tmp_path_factory.mktemp("toymesh")
    charts = StaticHttpServer(chart_repository(tmp_path / "charts"))
    command = [str(MESHPLANE), "adapter", "tests.adapters.toy.toymesh:DECLARATION"]
    args = [
        "--port",
        "0",
        "--kubeconfig",
        str(kubesim_module.kubeconfig),
        "--chart-repo",
        charts.url,
        "--state-dir",
        str(tmp_path / "state"),
        "--cache-dir",
        str(tmp_path / "cache"),
        *accepting_flags(kubesim_module.url),  # --send-kubeconfig names kubesim in requests
    ]
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PYTHONPATH", str(PROJECT_ROOT))  # so the subprocess imports `tests`
            process = AdapterProcess(args, tmp_path / "toymesh.log", command=command).start()
        try:
            yield process
        finally:
            process.stop()
    finally:
        charts.stop()


@pytest.mark.timeout(60)
async def test_toymesh_passes_the_conformance_suite(
    toymesh: AdapterProcess, kubesim_module: RunningSim
) -> None:
    report = await run_suite(
        toymesh.address, SuiteConfig(kubeconfig=kubesim_module.kubeconfig, operation_timeout=30.0)
    )
    table = as_table(report, width=200)
    assert report.passed, table
    assert report.mesh == "toymesh"
    assert {r.check for r in report.results} == set(CHECK_NAMES)
    rows = {r.name: r for r in report.results}
    assert set(rows) >= {f"install-delete[{op}]" for op in ("install", "greeter", "validate")}
    assert all(r.outcome is Outcome.PASS for r in report.results), table
    installed = rows["install-delete[install]"].message
    assert "CustomResourceDefinition" in installed and "Greeting" in installed, installed
    assert "Greeting" in rows["install-delete[greeter]"].message
    assert "default 0.2.0" in rows["mesh-versions"].message
    assert await managed_objects(kubesim_module.url) == []


@pytest.mark.timeout(60)
def test_meshplane_conformance_command(toymesh: AdapterProcess, kubesim_module: RunningSim) -> None:
    command = [
        str(MESHPLANE),
        "conformance",
        "--adapter",
        toymesh.address,
        "--kubeconfig",
        str(kubesim_module.kubeconfig),
        "--operation-timeout",
        "30",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "RESULT", "TIME", "DETAIL"]
    rows = [line.split()[:2] for line in lines[1 : lines.index("")]]
    assert [name for name, _ in rows if "[" not in name] == [
        n for n in CHECK_NAMES if n != "install-delete"
    ]
    assert ["install-delete[greeter]", "PASS"] in rows
    assert {result for _, result in rows} == {"PASS"}
    assert "CONFORMANT: toymesh adapter" in done.stdout


def _main(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="meshplane")
    conformance_cli.register(parser.add_subparsers())
    args = parser.parse_args(["conformance", *argv])
    try:
        return int(args.run(args))
    finally:
        reset_logging()


@pytest.mark.timeout(60)
def test_json_output_and_only(
    toymesh: AdapterProcess, kubesim_module: RunningSim, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--adapter", toymesh.address, "--kubeconfig", str(kubesim_module.kubeconfig)]
    assert (
        _main(*where, "--only", "get-info,catalogue", "--only", "bad-namespace", "--output", "json")
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["passed"] is True and document["mesh"] == "toymesh"
    assert [r["name"] for r in document["results"]] == ["get-info", "catalogue", "bad-namespace"]
    assert document["summary"] == {"pass": 3, "fail": 0, "skip": 0}


def test_the_command_refuses_what_it_cannot_run(
    tmp_path: Path, kubesim_module: RunningSim, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = str(kubesim_module.kubeconfig)
    assert _main("--adapter", "127.0.0.1:1", "--kubeconfig", kubeconfig, "--only", "nope") == 2
    assert "unknown check nope" in capsys.readouterr().err
    assert _main("--adapter", "127.0.0.1:1", "--kubeconfig", str(tmp_path / "missing")) == 2
    assert "no kubeconfig" in capsys.readouterr().err
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{unused.getsockname()[1]}"
        refused = _main(
            "--adapter", address, "--kubeconfig", kubeconfig, "--connect-timeout", "0.3"
        )
    assert refused == 2
    assert f"no gRPC server answered at {address}" in capsys.readouterr().err


@pytest.mark.timeout(60)
async def test_the_suite_can_name_the_cluster_in_each_request(
    toymesh: AdapterProcess, kubesim_module: RunningSim
) -> None:
    """--send-kubeconfig: requests carry Cluster.kubeconfig instead of using the adapter's own."""
    config = SuiteConfig(
        kubeconfig=kubesim_module.kubeconfig,
        send_kubeconfig=True,
        run_id="named",
        only=frozenset({"install-delete", "operation-terminal"}),
        operation_timeout=30.0,
    )
    report = await run_suite(toymesh.address, config)
    assert report.passed, as_table(report, width=200)
    assert len(report.results) == 5  # install, greeter, validate, custom, operation-terminal
    assert await managed_objects(kubesim_module.url) == []
    async with grpc.aio.insecure_channel(toymesh.address) as channel:
        stub = pb_grpc.MeshAdapterServiceStub(channel)
        listed = await stub.ListOperations(pb.ListOperationsRequest())
        assert {op.id for op in listed.operations} == {"install", "greeter", "validate", "custom"}
        call = stub.StreamEvents(pb.StreamEventsRequest())
        clusters: set[str] = set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for reply in call:
                    if reply.event.operation_id.startswith("conformance-named-"):
                        clusters.add(reply.event.cluster)
        call.cancel()
    assert "conformance" in clusters and "default" not in clusters, clusters
