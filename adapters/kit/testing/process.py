"""Run `meshplane adapter MESH` as a real subprocess, the way a platform runs it.

`AdapterProcess` starts the command, reads the gRPC address from the one JSON line it prints on
start, and offers what a test needs of the process: its log, SIGKILL, SIGTERM and its RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

__all__ = ["MESHPLANE", "AdapterProcess"]

MESHPLANE = Path(sys.executable).parent / "meshplane"
"""The `meshplane` console script of the running interpreter's environment."""


class AdapterProcess:
    """One adapter subprocess; `start` blocks until it printed its address."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        command: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        *,
        mesh: str = "istio",
    ) -> None:
        """``args`` follow the command: by default `meshplane adapter MESH`; ``command`` runs
        something else that prints the same JSON line (e.g. `meshplane coordinator`)."""
        self.command = list(command) or [str(MESHPLANE), "adapter", mesh]
        self.env = dict(env or {})
        self.args = list(args)
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.started_at = 0.0
        self._log: IO[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> AdapterProcess:
        """Spawn and wait for the JSON line naming the gRPC address."""
        self._log = self.log_path.open("a", encoding="utf-8")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [*self.command, *self.args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "MESHPLANE_ADAPTER_LOG_FORMAT": "json", **self.env},
        )
        found: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                if not found and line.strip().startswith("{"):
                    found.append(line)
            # keep draining so the child never blocks on a full pipe

        reader = threading.Thread(target=read, name="adapter-stdout", daemon=True)
        reader.start()
        self._reader = reader
        deadline = time.monotonic() + timeout
        while not found:
            if self.process.poll() is not None:
                raise RuntimeError(f"adapter exited with {self.process.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"adapter printed no address in {timeout}s: {self.logs()}")
            time.sleep(0.01)
        self.address = str(json.loads(found[0])["grpc"])
        return self

    def logs(self) -> str:
        """The adapter's stderr so far (last 4 KiB), for failure messages."""
        try:
            return self.log_path.read_text(encoding="utf-8")[-4096:]
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident set size from /proc (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL: the adapter gets no chance to record anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._close_log()
        return int(self.process.returncode)

    def _close_log(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)  # EOF once the process is gone
            self._reader = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
