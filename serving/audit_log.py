"""An opt-in record of what a server process starts and opens, for tests (``sys.addaudithook``).

With ``MESHPLANE_TEST_SERVER_AUDIT_LOG=/some/path`` in its environment, a server installs an
audit hook at start-up that appends one JSON line per process start (``subprocess.Popen``,
``os.system``, ``os.exec``, ``os.posix_spawn``, ``os.spawn``, ``os.fork``) and per file open
(``open``, which Python raises for ``open()``, ``os.open`` and code it imports) to that file,
each tagged with the phase it happened in: ``startup`` until the gRPC server serves,
``serving`` after. The hostile-request tests read it to prove that no request made the server
start a program or open a file it had not opened before.

Audit hooks cannot be removed, so this is for test processes only; without the variable nothing
is installed and nothing is recorded.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import IO, Any

__all__ = ["AUDIT_LOG_ENV", "WATCHED_EVENTS", "install_from_environment", "mark_serving"]

AUDIT_LOG_ENV = "MESHPLANE_TEST_SERVER_AUDIT_LOG"
WATCHED_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
        "open",
    }
)


class _AuditLog:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._inside = threading.local()
        self.phase = "startup"

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in WATCHED_EVENTS or getattr(self._inside, "active", False):
            return
        self._inside.active = True
        try:
            detail = args[0] if args else ""
            if isinstance(detail, bytes):
                detail = os.fsdecode(detail)
            mode = args[1] if event == "open" and len(args) > 1 else None
            line = {
                "phase": self.phase,
                "event": event,
                "target": detail if isinstance(detail, str | int) else repr(detail)[:500],
                "mode": mode if isinstance(mode, str | int) or mode is None else repr(mode),
            }
            with self._lock:
                self._stream.write(json.dumps(line) + "\n")
                self._stream.flush()
        finally:
            self._inside.active = False

    def mark(self, phase: str) -> None:
        with self._lock:
            self.phase = phase
            self._stream.write(json.dumps({"phase": phase, "event": "phase"}) + "\n")
            self._stream.flush()


_INSTALLED: list[_AuditLog] = []


def install_from_environment() -> bool:
    """Install the hook when `AUDIT_LOG_ENV` names a file; True when installed (once)."""
    path = os.environ.get(AUDIT_LOG_ENV)
    if not path or _INSTALLED:
        return bool(_INSTALLED)
    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the process
    _INSTALLED.append(_AuditLog(stream))
    sys.addaudithook(_INSTALLED[0].hook)
    return True


def mark_serving() -> None:
    """Start tagging events ``serving`` (a no-op unless the hook is installed)."""
    for log in _INSTALLED:
        log.mark("serving")
