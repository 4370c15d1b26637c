"""Durations written the way Go tools (kubectl, helm, istioctl) write them: ``1h30m``, ``90s``.

A duration is one or more ``<number><unit>`` parts, units ``ns us µs ms s m h``, with decimals
allowed (``1.5h``); a bare number means seconds, so older scripts keep working. Parsing is
strict: ASCII digits only, no sign, at most 64 characters, and the total must be finite and
below a day times 366 — a typo never turns into a huge or negative value.
"""

from __future__ import annotations

import argparse
import re

__all__ = ["DurationError", "duration_argument", "format_duration", "parse_duration"]

_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)", re.ASCII)
_BARE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+", re.ASCII)
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_TEXT = 64
_MAX_SECONDS = 366 * 24 * 3600.0


class DurationError(ValueError):
    """Text that is not a duration; the message shows what is accepted."""


def parse_duration(text: str) -> float:
    """``"5m"``, ``"1h30m"``, ``"500ms"``, ``"2.5s"`` or ``"30"`` (seconds) -> seconds."""
    value = text.strip()
    shown = value if len(value) <= 40 else value[:40] + "..."
    if not value or len(value) > _MAX_TEXT:
        raise DurationError(f"not a duration: {shown!r} (e.g. 30s, 500ms, 5m, 1h30m)")
    if _BARE.fullmatch(value):
        seconds = float(value)
    else:
        seconds = 0.0
        position = 0
        for match in _PART.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _SECONDS[match.group(2)]
            position = match.end()
        if position != len(value):
            raise DurationError(f"not a duration: {shown!r} (e.g. 30s, 500ms, 5m, 1h30m)")
    if seconds > _MAX_SECONDS:
        raise DurationError(f"duration {shown!r} is longer than 366 days")
    return seconds


def duration_argument(text: str) -> float:
    """`parse_duration` as an argparse ``type=``: a bad value is a usage error naming the form."""
    try:
        return parse_duration(text)
    except DurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def format_duration(seconds: float) -> str:
    """Seconds as a short Go-style duration: ``1h30m``, ``2m5s``, ``1.5s``, ``250ms``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    fraction = seconds - whole
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if secs or fraction or not parts:
        parts.append(f"{secs + fraction:g}s" if fraction and not hours else f"{secs}s")
    return "".join(parts)
