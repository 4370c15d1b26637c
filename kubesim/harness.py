"""Run kubesim in a background thread with its own event loop: for tests and tools."""

from __future__ import annotations

import asyncio
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
