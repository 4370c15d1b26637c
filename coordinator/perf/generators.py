"""Run a test with the generator its config names (built-in or wrk); fortio is import-only."""

from __future__ import annotations

from coordinator.perf.results import (
    EnvironmentInfo,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    TestConfig,
)
from coordinator.perf.running import ProgressCallback, run_builtin
from coordinator.perf.wrk_generator import run_wrk


async def run_test(
    config: TestConfig,
    *,
    mesh: MeshInfo | None = None,
    environment: EnvironmentInfo | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit_s: float = float("inf"),
) -> PerformanceResult:
    """Generate the load of `config` and return the normalised result.

    wrk reports nothing until it ends, so `on_progress` is only called by the built-in generator.
    A test stopped by request count also stops after `time_limit_s` (wrk runs by duration only).
    """
    if not config.clients:
        raise ValueError("the test config has no clients")
    generator = config.clients[0].load_generator
    if generator is LoadGenerator.BUILTIN:
        return await run_builtin(
            config,
            mesh=mesh,
            environment=environment,
            on_progress=on_progress,
            time_limit_s=time_limit_s,
        )
    if generator is LoadGenerator.WRK:
        return await run_wrk(config, mesh=mesh, environment=environment)
    raise ValueError("fortio results are imported from fortio's JSON file, not run by meshplane")
