"""Running the suite: connect, run the selected checks in order, undo what they installed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import structlog

from adapters.conformance.checks import CHECK_NAMES, CHECKS, Check
from adapters.conformance.cluster_view import ClusterView, ClusterViewError
from adapters.conformance.suite_config import SuiteConfig
from adapters.conformance.suite_context import SuiteContext
from adapters.conformance.verdicts import CheckFailed, CheckResult, CheckSkipped, Outcome
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from serving import dial

__all__ = ["AdapterUnreachable", "SuiteReport", "run_suite"]

_log = structlog.get_logger(__name__)


class AdapterUnreachable(Exception):
    """No adapter answered at the address (nothing was checked)."""


@dataclass(frozen=True, kw_only=True)
class SuiteReport:
    """Every row of one suite run against one adapter."""

    adapter: str
    mesh: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        """True when no row failed (skips are not failures)."""
        return all(r.outcome is not Outcome.FAIL for r in self.results)

    def count(self, outcome: Outcome) -> int:
        """How many rows have ``outcome``."""
        return sum(1 for r in self.results if r.outcome is outcome)

    def failures(self) -> list[CheckResult]:
        """The failed rows."""
        return [r for r in self.results if r.outcome is Outcome.FAIL]


async def _run_check(ctx: SuiteContext, check: Check) -> list[CheckResult]:
    started = time.monotonic()
    try:
        found = await check.run(ctx)
    except CheckSkipped as exc:
        found, outcome = str(exc), Outcome.SKIP
    except CheckFailed as exc:
        found, outcome = str(exc), Outcome.FAIL
    except grpc.aio.AioRpcError as exc:
        found, outcome = f"{exc.code().name}: {exc.details()}", Outcome.FAIL
    except ClusterViewError as exc:
        found, outcome = f"cannot read the cluster: {exc}", Outcome.FAIL
    except Exception as exc:
        _log.exception("conformance.check_crashed", check=check.name)
        found, outcome = f"the check itself crashed ({type(exc).__name__}: {exc})", Outcome.FAIL
    else:
        outcome = Outcome.PASS
    results = (
        found
        if isinstance(found, list)
        else [
            CheckResult(
                check=check.name,
                outcome=outcome,
                message=found,
                seconds=time.monotonic() - started,
            )
        ]
    )
    for result in results:
        _log.info(
            "conformance.check",
            check=result.name,
            outcome=result.outcome.value,
            message=result.message,
        )
    return results


async def _reachable(channel: Any, address: str, within: float) -> None:
    try:
        async with asyncio.timeout(within):
            await channel.channel_ready()
    except TimeoutError as exc:
        raise AdapterUnreachable(
            f"no gRPC server answered at {address} within {within:g}s"
        ) from exc


async def run_suite(
    address: str,
    config: SuiteConfig,
    *,
    channel: Any = None,
    connect_timeout: float = 10.0,
) -> SuiteReport:
    """Run the selected checks against the adapter at ``address`` (or over ``channel``).

    Raises ValueError for an unknown check name in ``config.only``, `AdapterUnreachable` when
    nothing answers, and `ClusterViewError` when the kubeconfig cannot be used.
    """
    unknown = sorted(config.only - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown check {', '.join(unknown)}; checks: {', '.join(CHECK_NAMES)}")
    own_channel = channel is None
    if own_channel:
        channel = dial(address, tls=None)
    try:
        await _reachable(channel, address, connect_timeout)
        async with await ClusterView.connect(
            config.kubeconfig, context=config.kube_context or None
        ) as view:
            ctx = SuiteContext(pb_grpc.MeshAdapterServiceStub(channel), config, view)
            results: list[CheckResult] = []
            try:
                for check in CHECKS:
                    if not config.only or check.name in config.only:
                        results.extend(await _run_check(ctx, check))
            finally:
                await ctx.close()
            mesh = ""
            with contextlib.suppress(grpc.aio.AioRpcError):  # get-info has reported it
                mesh = (await ctx.info()).mesh
    finally:
        if own_channel:
            await channel.close()
    return SuiteReport(adapter=address, mesh=mesh, results=tuple(results))
