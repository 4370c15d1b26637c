"""Quoting caller input in error messages: at most ``QUOTE_LIMIT`` characters of it.

An error that echoes a field back helps the caller find the mistake, but echoing a 5 MB value
turns a refusal into a RESOURCE_EXHAUSTED on the client (and a huge log line on the server).
Every message that quotes request input goes through `quoted`.
"""

from __future__ import annotations

__all__ = ["QUOTE_LIMIT", "quoted"]

QUOTE_LIMIT = 200
"""Characters of input an error message shows; the rest is summarised by its length."""


def quoted(value: object, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, with a string cut to ``limit`` characters first (saying how long it was);
    any other value's repr is cut the same way.

    >>> quoted("abc")
    "'abc'"
    >>> quoted("x" * 300, limit=4)
    "'xxxx'... (300 characters)"
    """
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"
