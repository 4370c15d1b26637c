"""Starting and stopping the children of `meshplane up` as `meshplane` subprocesses.

Each child runs in its own session (a terminal's Ctrl-C reaches only `up`, which stops them in
order) and, on Linux, gets SIGTERM if `up` dies without cleaning up. Stdout goes to
``<logs>/<name>.out`` (read for the address it announces), the log to ``<name>.log``.
Stopping sends SIGTERM, then SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys
from collections.abc import Sequence

import structlog

from coordinator.sandbox.children import Child
from coordinator.sandbox.settings import SandboxSettings

__all__ = ["Launcher"]

_log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_KUBE_GRACE_FACTOR = 6
"""`kube up` stops five processes in order, each with its own grace period."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only; ignored elsewhere)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Launcher:
    """Runs `meshplane` subcommands as children, with the settings' interpreter and logs."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings

    async def execute(self, name: str, args: Sequence[str]) -> asyncio.subprocess.Process:
        """One child process; stdout starts empty (it is read for the address), the log grows."""
        logs = self.settings.logs
        logs.mkdir(parents=True, exist_ok=True)
        with (
            (logs / f"{name}.out").open("wb") as out,
            (logs / f"{name}.log").open("ab") as err,
        ):
            process = await asyncio.create_subprocess_exec(
                self.settings.python,
                "-m",
                "meshplane_cli.main",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        _log.info("sandbox.started", child=name, pid=process.pid)
        return process

    async def spawn(self, name: str, args: Sequence[str]) -> Child:
        """Start ``meshplane ARGS`` as the child ``name``."""
        process = await self.execute(name, args)
        logs = self.settings.logs
        return Child(
            name=name,
            args=tuple(args),
            process=process,
            stdout_path=logs / f"{name}.out",
            log_path=logs / f"{name}.log",
        )

    async def stop(self, child: Child) -> None:
        """SIGTERM, then SIGKILL once the grace period is over; returns once it exited."""
        process = child.process
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            grace = self.settings.stop_grace_seconds
            if child.name == "kube":
                grace *= _KUBE_GRACE_FACTOR
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                _log.warning("sandbox.kill", child=child.name, pid=process.pid)
                await kill(child)
        _log.info("sandbox.stopped", child=child.name, exit_code=process.returncode)


async def kill(child: Child) -> None:
    """SIGKILL the child (if it still runs) and reap it."""
    if child.process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.process.kill()
    await child.process.wait()
