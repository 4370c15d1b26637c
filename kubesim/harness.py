"""Run kubesim for tests and tools: in a background thread with its own event loop
(`running_kubesim`), or as its own `meshplane kubesim` process (`kubesim_process`), as an API
server is, when a measurement must not share an interpreter with it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubesim.server import KubeSim, SimConfig


@dataclass(frozen=True, kw_only=True)
class RunningSim:
    url: str
    kubeconfig: Path
    sim: KubeSim
    loop: asyncio.AbstractEventLoop

    def call(self, func: Any, *args: Any) -> Any:
        """Run `func(*args)` on the server's loop (to read or change state safely)."""

        async def invoke() -> Any:
            return func(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), self.loop).result(timeout=30)


@contextmanager
def running_kubesim(
    config: SimConfig | None = None, *, start_timeout: float = 30.0
) -> Iterator[RunningSim]:
    """Start kubesim on its own loop in a daemon thread; stop it and fail on leftover tasks."""
    sim = KubeSim(config or SimConfig())
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    leftovers: list[str] = []

    async def main(stop: asyncio.Event) -> None:
        try:
            await sim.start()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            raise
        started.set()
        await stop.wait()
        await sim.stop()
        me = asyncio.current_task()
        leftovers.extend(t.get_name() for t in asyncio.all_tasks() if t is not me and not t.done())

    stop_event = asyncio.Event()

    def thread_main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main(stop_event))
        except BaseException as exc:
            if not failure:
                failure.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=thread_main, name="kubesim", daemon=True)
    thread.start()
    if not started.wait(start_timeout) or failure:
        raise RuntimeError(f"kubesim did not start: {failure[0] if failure else 'timeout'}")
    try:
        yield RunningSim(url=sim.url, kubeconfig=sim.kubeconfig, sim=sim, loop=loop)
    finally:
        loop.call_soon_threadsafe(stop_event.set)
        thread.join(timeout=30)
        if thread.is_alive():
            raise RuntimeError("kubesim did not stop within 30s")
        if failure:
            raise RuntimeError(f"kubesim failed: {failure[0]!r}")
        if leftovers:
            raise RuntimeError(f"kubesim left tasks running: {leftovers}")


@dataclass(frozen=True, kw_only=True)
class SimProcess:
    """A `meshplane kubesim` process: where it serves, its kubeconfig, its pid."""

    url: str
    kubeconfig: Path
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def kubesim_process(directory: Path, *args: str) -> Iterator[SimProcess]:
    """Start `meshplane kubesim --port 0 --ready-delay 0 ARGS` writing its kubeconfig under
    ``directory``; SIGTERM it on exit (killed if it does not stop within 20 s)."""
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshplane_cli.main",
            "kubesim",
            "--port",
            "0",
            "--ready-delay",
            "0",
            "--kubeconfig-out",
            str(kubeconfig),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("kubesim serving at "):
            raise RuntimeError(f"kubesim did not start: {line!r}")
        child.stdout.readline()  # the kubeconfig line
        yield SimProcess(url=line.split()[-1], kubeconfig=kubeconfig, pid=child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=20)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
