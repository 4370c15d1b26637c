"""Ctrl-C in client commands: one SIGINT handler on the event loop, whose action scopes set.

A client command mostly waits on gRPC calls. asyncio's default Ctrl-C handler is a plain
``signal.signal`` one, which Python runs in the main thread once that thread is interrupted or
next executes bytecode. When the kernel hands SIGINT to one of gRPC's threads instead, the main
thread sleeps on in the event loop until something else wakes it: for a command waiting on an
answer that does not come, the call's deadline (seen once under load: the coordinator's 5 s,
then exit 4 instead of 130; the test sends SIGINT to a gRPC thread with tgkill).
``loop.add_signal_handler`` has the signal written to the loop's wakeup descriptor too, so the
loop wakes and acts on it whichever thread the signal interrupted.

`ctrl_c_cancels` makes Ctrl-C cancel the command (the caller reports 130); `on_ctrl_c` lets an
inner scope (``apply --wait``'s follower) take Ctrl-C presses for a while and gives them back
when it ends. Outside the main thread (an embedding program) nothing is installed: signals reach
the main thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

__all__ = ["ctrl_c_cancels", "on_ctrl_c"]

_actions: list[Callable[[], None]] = []
"""What Ctrl-C does, innermost scope last."""


@contextlib.contextmanager
def on_ctrl_c(action: Callable[[], None]) -> Iterator[None]:
    """While inside, each Ctrl-C calls ``action`` on the running loop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    _actions.append(action)
    loop.add_signal_handler(signal.SIGINT, action)
    try:
        yield
    finally:
        _actions.remove(action)
        if _actions:
            loop.add_signal_handler(signal.SIGINT, _actions[-1])
        else:
            loop.remove_signal_handler(signal.SIGINT)


@contextlib.contextmanager
def ctrl_c_cancels(task: asyncio.Task[object]) -> Iterator[None]:
    """While inside, Ctrl-C cancels ``task`` (the command's own, usually)."""

    def cancel() -> None:
        task.cancel()

    with on_ctrl_c(cancel):
        yield
