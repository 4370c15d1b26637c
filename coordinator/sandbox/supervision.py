"""Keeping the children of `meshplane up` running: a child that exits is restarted with the same
arguments after a growing delay, until it exits more than ``max_restarts`` times within
``restart_window_seconds`` (then it is not going to get better by itself)."""

from __future__ import annotations

import asyncio

import structlog

from coordinator.sandbox.children import CLUSTER_CHILDREN, Child, SandboxError
from coordinator.sandbox.launching import Launcher, kill
from coordinator.sandbox.readiness import (
    await_announced,
    await_line,
    await_serving,
    exited_early,
    kubeconfig_written,
)
from coordinator.sandbox.settings import SandboxSettings

__all__ = ["Supervisor"]

_log = structlog.get_logger(__name__)

_LONGEST_BACKOFF_SECONDS = 10.0


class Supervisor:
    """Restarts the sandbox's ``children`` (the list the sandbox keeps) when they exit."""

    def __init__(
        self, settings: SandboxSettings, launcher: Launcher, children: list[Child]
    ) -> None:
        self.settings = settings
        self._launcher = launcher
        self._children = children

    async def supervise(self) -> Child:
        """Restart children that exit; returns the first one whose restart budget ran out."""
        while True:
            child = await self.wait_for_exit()
            if not await self._restart(child):
                return child

    async def wait_for_exit(self) -> Child:
        """Until any child exits; returns it."""
        waits = {
            asyncio.ensure_future(child.process.wait()): child for child in list(self._children)
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for waiting in waits:
                waiting.cancel()

    def _recent_restarts(self, child: Child, now: float) -> int:
        while child.restarts and now - child.restarts[0] > self.settings.restart_window_seconds:
            child.restarts.popleft()
        return len(child.restarts)

    async def _restart(self, child: Child) -> bool:
        """Restart ``child`` until it is ready again; False once its restart budget is spent."""
        loop = asyncio.get_running_loop()
        while True:
            recent = self._recent_restarts(child, loop.time())
            if recent >= self.settings.max_restarts:
                return False
            delay = min(_LONGEST_BACKOFF_SECONDS, self.settings.restart_backoff_seconds * 2**recent)
            _log.warning(
                "sandbox.child_exited",
                child=child.name,
                exit_code=child.process.returncode,
                restart_in_seconds=delay,
                log=str(child.log_path),
            )
            await asyncio.sleep(delay)
            child.restarts.append(loop.time())
            child.process = await self._launcher.execute(child.name, child.args)
            try:
                await self._ready_again(child)
            except SandboxError as exc:
                _log.warning("sandbox.restart_failed", child=child.name, error=str(exc))
                await kill(child)
                continue
            _log.warning(
                "sandbox.restarted",
                child=child.name,
                pid=child.process.pid,
                restarts_in_window=len(child.restarts),
            )
            return True

    async def _ready_again(self, child: Child) -> None:
        """A restarted child announced itself and (for gRPC children) is SERVING again."""
        within = self.settings.start_timeout_seconds
        if child.name in CLUSTER_CHILDREN:
            if child.name == "kube":
                within = self.settings.real_kube_start_timeout_seconds
            if await await_line(child, kubeconfig_written, within=within) is None:
                raise exited_early(child)
            return
        await await_announced(child, within=within)
        await await_serving(child, within=within)
