"""An operation's progress as a person reads it: one line per phase, not one per object.

The adapter kit reports each object's step as an event whose ``component`` is the object and
whose summary is ``"<component> <verb>"`` (applied, unchanged, waiting, ready, hook completed,
...), and announces the plan as ``"applying N objects ..."``. From those this view keeps phase
counts — render, apply n/N, ready n/M, hooks n — and shows them:

- on a terminal, as one live line per phase with the elapsed time, rewritten in place and left
  behind when the next phase starts;
- elsewhere (a pipe, a log), as one plain line per finished phase;
- with ``verbose``, every event on its own line as well (the per-object view).

Warnings and errors always get their own line. Colour is used only on a terminal and never when
``NO_COLOR`` is set (https://no-color.org).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import TextIO

from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = ["ProgressView", "colour_enabled", "event_line"]

_APPLY_VERBS = ("applied", "unchanged", "deleted", "pruned", "kept", "failed")
_PLAN = re.compile(r"^applying (\d+) objects\b")
_CLEAR = "\r\x1b[2K"
_COLOURS = {"green": "32", "yellow": "33", "red": "31", "dim": "2"}


def colour_enabled(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (to anything)."""
    return stream.isatty() and "NO_COLOR" not in os.environ


def event_line(response: cpb.WatchEventsResponse) -> str:
    """One event as a line: its mark, where (cluster, component) and what happened."""
    event = response.event
    where = f"cluster {event.cluster}" if event.cluster else ""
    if event.component and event.component not in event.summary:
        where = f"{where} {event.component}".strip()
    mark = {apb.EVENT_SEVERITY_WARNING: "!", apb.EVENT_SEVERITY_ERROR: "x"}.get(event.severity, "-")
    return f"  {mark} {where + ': ' if where else ''}{event.summary}"


@dataclass
class _Counts:
    """One phase's tally over the whole operation (tiers may return to a phase)."""

    done: int = 0
    total: int | None = None


@dataclass
class _Phase:
    name: str
    started: float
    counts: _Counts

    def text(self, now: float) -> str:
        counts = self.counts
        if self.name == "render":
            count = ""
        elif counts.total is not None:
            count = f" {counts.done}/{counts.total}"
        else:
            count = f" {counts.done}"
        return f"{self.name}{count} ({now - self.started:.1f}s)"


@dataclass
class ProgressView:
    """Turns WatchEvents responses for one operation into phase lines on ``out``."""

    out: TextIO
    live: bool
    verbose: bool = False
    colour: bool = False
    _phase: _Phase | None = None
    _waiting: set[str] = field(default_factory=set)
    _counts: dict[str, _Counts] = field(default_factory=dict)
    _line_shown: bool = False

    def event(self, response: cpb.WatchEventsResponse) -> None:
        """Account for one event (and print what it warrants)."""
        event = response.event
        verb = _verb(event)
        now = time.monotonic()
        plan = _PLAN.match(event.summary)
        if plan:
            self._enter("apply", now).total = int(plan.group(1))
        elif verb in _APPLY_VERBS:
            self._enter("apply", now).done += 1
        elif verb == "waiting":
            self._waiting.add(event.component)
            self._enter("ready", now).total = len(self._waiting)
        elif verb == "ready":
            counts = self._enter("ready", now)
            counts.done += 1
            counts.total = max(len(self._waiting), counts.done)
        elif verb == "hook completed":
            self._enter("hooks", now).done += 1
        elif self._phase is None and event.operation_state not in _ENDED:
            self._enter("render", now)
        if self.verbose:
            self._print(event_line(response))
        elif event.severity in (apb.EVENT_SEVERITY_WARNING, apb.EVENT_SEVERITY_ERROR):
            colour = "red" if event.severity == apb.EVENT_SEVERITY_ERROR else "yellow"
            self._print(self._paint(event_line(response), colour))
        self._draw(now)

    def tick(self) -> None:
        """Redraw the live line (the elapsed time moves even without events)."""
        self._draw(time.monotonic())

    def close(self) -> None:
        """Leave the last phase's line behind before the outcome is printed."""
        self._finish(time.monotonic())

    def _enter(self, name: str, now: float) -> _Counts:
        """Make ``name`` the current phase (leaving the previous one's line) -> its counts."""
        phase = self._phase
        if phase is None or phase.name != name:
            self._finish(now)
            counts = self._counts.setdefault(name, _Counts())
            phase = self._phase = _Phase(name=name, started=now, counts=counts)
        return phase.counts

    def _finish(self, now: float) -> None:
        phase = self._phase
        if phase is None:
            return
        text = self._paint("done", "green") + " " + phase.text(now)
        if self.live:
            self.out.write(f"{_CLEAR}{text}\n")
        else:
            self.out.write(f"{text}\n")
        self.out.flush()
        self._phase = None
        self._line_shown = False

    def _draw(self, now: float) -> None:
        if not self.live or self._phase is None:
            return
        self.out.write(f"{_CLEAR}{self._paint('...', 'dim')} {self._phase.text(now)}")
        self.out.flush()
        self._line_shown = True

    def _print(self, line: str) -> None:
        if self.live and self._line_shown:
            self.out.write(_CLEAR)
            self._line_shown = False
        self.out.write(line + "\n")
        self.out.flush()

    def _paint(self, text: str, colour: str) -> str:
        if not self.colour:
            return text
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


_ENDED = frozenset(
    {
        apb.OPERATION_STATE_SUCCEEDED,
        apb.OPERATION_STATE_FAILED,
        apb.OPERATION_STATE_CANCELLED,
        apb.OPERATION_STATE_INTERRUPTED,
    }
)


def _verb(event: apb.Event) -> str:
    """The step an object event reports (``"<component> <verb>"``), or "" for other events."""
    prefix = f"{event.component} "
    if event.component and event.summary.startswith(prefix):
        return event.summary[len(prefix) :]
    return ""
