"""Run the `meshplane` command in a child process, as a user runs it.

Tests never call the CLI's ``main`` in a thread of the test process: the CLI runs grpc.aio on an
event loop of its own, and grpc.aio objects of two event loops in two threads of one process
crashed test workers (segmentation faults while garbage-collecting, seen in CI).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

__all__ = ["meshplane"]


async def meshplane(
    *argv: str, within: float = 60.0, env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """``meshplane ARGV`` with this process's environment (plus ``env``): (exit code, stdout,
    stderr). Killed, failing the test, when it takes longer than ``within`` seconds."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshplane_cli.main",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"meshplane {' '.join(argv)} took over {within} s") from None
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
