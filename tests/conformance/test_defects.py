"""The suite fails adapters that break the contract: one defect at a time, in front of Istio.

One Istio adapter (toy charts) and one simulated cluster serve the whole module; each test puts
a `DefectiveProxy` in front of it and runs only the checks that defect concerns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc.aio
import pytest

from adapters.conformance import (
    CHECK_NAMES,
    CheckResult,
    Outcome,
    SuiteConfig,
    SuiteReport,
    as_table,
    run_suite,
)
from adapters.kit.testing import AdapterProcess, managed_objects
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from tests.conformance.adapters_under_test import TOY_ISTIO, running_adapter
from tests.conformance.defective_proxy import Defect, DefectiveProxy, service
from tests.plugins.grpc_servers import StartGrpcServer
from tests.plugins.static_http import StaticHttpServer


@pytest.fixture(scope="module")
def istio(
    kubesim_module: RunningSim, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AdapterProcess]:
    """The Istio adapter shared by the module's tests."""
    tmp_path = tmp_path_factory.mktemp("defects")
    servers: list[StaticHttpServer] = []

    def serve(directory: Path) -> StaticHttpServer:
        servers.append(StaticHttpServer(directory))
        return servers[-1]

    try:
        with running_adapter(
            "istio", TOY_ISTIO(tmp_path), sim=kubesim_module, tmp_path=tmp_path, serve=serve
        ) as process:
            yield process
    finally:
        for server in servers:
            server.stop()


@dataclass(kw_only=True)
class Proxied:
    """A proxy address and what it sits in front of."""

    address: str
    proxy: DefectiveProxy
    upstream: pb_grpc.MeshAdapterServiceStub
    sim: RunningSim

    async def run(
        self, *checks: str, operation_timeout: float = 30.0, prompt_seconds: float = 2.0
    ) -> SuiteReport:
        config = SuiteConfig(
            kubeconfig=self.sim.kubeconfig,
            only=frozenset(checks),
            operation_timeout=operation_timeout,
            prompt_seconds=prompt_seconds,
        )
        return await run_suite(self.address, config)


@pytest.fixture
async def proxied(
    request: pytest.FixtureRequest,
    istio: AdapterProcess,
    kubesim_module: RunningSim,
    start_grpc_server: StartGrpcServer,
) -> AsyncIterator[Proxied]:
    defect, catalogue = request.param
    channel = grpc.aio.insecure_channel(istio.address)
    upstream = pb_grpc.MeshAdapterServiceStub(channel)
    proxy = DefectiveProxy(upstream, defect, catalogue=catalogue)
    server = await start_grpc_server([service(proxy)])
    try:
        yield Proxied(address=server.address, proxy=proxy, upstream=upstream, sim=kubesim_module)
    finally:
        await channel.close()


def row(report: SuiteReport, name: str) -> CheckResult:
    return next(r for r in report.results if r.name == name)


FAST_CHECKS = tuple(name for name in CHECK_NAMES if name != "install-delete")


@pytest.mark.parametrize("proxied", [(Defect.NONE, ())], indirect=True)
async def test_without_a_defect_the_proxy_passes_every_check(proxied: Proxied) -> None:
    report = await proxied.run(*FAST_CHECKS)
    assert report.passed, as_table(report, width=200)
    assert [r.check for r in report.results] == list(FAST_CHECKS)
    # The mesh these checks installed was uninstalled when the suite ended.
    assert await managed_objects(proxied.sim.url) == []


CASES = [
    (Defect.CONTRACT_V2, "get-info", "contract_version is 'v2'"),
    (Defect.BLANK_DESCRIPTION, "catalogue", "no description"),
    (Defect.DEFAULT_NOT_LISTED, "mesh-versions", "default_version '99.0.0' is not among"),
    (Defect.UNKNOWN_IS_INVALID, "unknown-operation", "expected NOT_FOUND, got INVALID_ARGUMENT"),
    (Defect.VAGUE_NAMESPACE_ERROR, "bad-namespace", "does not name the namespace field"),
    (Defect.NEW_RUN_ON_RESEND, "idempotent-operation-id", "created is true"),
    (Defect.SHUFFLED_EVENTS, "event-sequence", "do not strictly increase"),
    (Defect.REPLAY_IGNORES_AFTER, "event-sequence", "after_sequence="),
    (Defect.NO_END_TIME, "operation-terminal", "has no end_time"),
]


@pytest.mark.parametrize(
    ("proxied", "check", "says"),
    [((defect, ()), check, says) for defect, check, says in CASES],
    ids=[defect.value for defect, _, _ in CASES],
    indirect=["proxied"],
)
async def test_a_defect_fails_its_check(proxied: Proxied, check: str, says: str) -> None:
    report = await proxied.run(check)
    result = row(report, check)
    assert result.outcome is Outcome.FAIL, as_table(report, width=200)
    assert says in result.message
    assert not report.passed


@pytest.mark.parametrize("proxied", [(Defect.SYNCHRONOUS_APPLY, ())], indirect=True)
async def test_a_synchronous_apply_is_not_prompt(proxied: Proxied) -> None:
    report = await proxied.run("apply-returns-promptly", prompt_seconds=0.05)
    result = row(report, "apply-returns-promptly")
    assert result.outcome is Outcome.FAIL, as_table(report, width=200)
    assert "must run in the background" in result.message


@pytest.mark.parametrize("proxied", [(Defect.NEVER_TERMINAL, ())], indirect=True)
async def test_an_operation_that_never_ends_fails_within_its_bound(proxied: Proxied) -> None:
    report = await proxied.run("operation-terminal", operation_timeout=1.0)
    result = row(report, "operation-terminal")
    assert result.outcome is Outcome.FAIL, as_table(report, width=200)
    assert "still RUNNING after 1.5s" in result.message


@pytest.mark.parametrize(
    "proxied", [(Defect.DELETE_LEAVES_OBJECTS, ("install", "httpbin", "validate"))], indirect=True
)
async def test_objects_left_after_delete_fail_that_operation(proxied: Proxied) -> None:
    report = await proxied.run("install-delete")
    table = as_table(report, width=200)
    try:
        httpbin = row(report, "install-delete[httpbin]")
        assert httpbin.outcome is Outcome.FAIL, table
        assert "left behind after delete" in httpbin.message
        assert "Deployment.apps default/httpbin-v1" in httpbin.message
        assert row(report, "install-delete[install]").outcome is Outcome.PASS, table
        assert row(report, "install-delete[validate]").outcome is Outcome.PASS, table
    finally:
        cleanup = await proxied.upstream.ApplyOperation(
            pb.ApplyOperationRequest(
                operation_id="defects-httpbin-cleanup", operation="httpbin", delete=True
            )
        )
        assert cleanup.operation_id
        for _ in range(500):
            got = await proxied.upstream.GetOperation(
                pb.GetOperationRequest(operation_id=cleanup.operation_id)
            )
            if got.operation.state == pb.OPERATION_STATE_SUCCEEDED:
                break
            await asyncio.sleep(0.02)
    assert await managed_objects(proxied.sim.url) == []
