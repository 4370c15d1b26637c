"""Strict parsing of integers that arrive as text (operation parameters); durations are
`serving.durations`.

Python's ``int`` accepts far more than a caller means: Unicode digits (``'²'.isdigit()`` is
true but ``int('²')`` fails; Arabic-Indic five is 5), surrounding whitespace, underscores
(``1_000``), and up to 4,300 digits before it raises. Here a number is ASCII digits only, with
one leading ``-`` only when the range allows negatives, at most as many digits as the range
needs, and inside the range; anything else is a `NumberError` whose message names the accepted
range and quotes at most a little of the input.
"""

from __future__ import annotations

import re

from serving.input_quoting import quoted

__all__ = ["NumberError", "parse_integer"]

_DIGITS = re.compile(r"-?[0-9]+")
_QUOTE = 40


class NumberError(ValueError):
    """Text that is not a number in the accepted range; the message says what is accepted."""


def parse_integer(text: str, *, minimum: int, maximum: int) -> int:
    """``text`` as a whole number in [minimum, maximum], or `NumberError`.

    Leading zeros are accepted (``007`` is 7) within the length limit: the digits of the widest
    bound plus one.
    """
    accepted = f"give a whole number from {minimum} to {maximum} (ASCII digits"
    accepted += ", optionally a leading '-')" if minimum < 0 else ")"
    width = max(len(str(abs(minimum))), len(str(abs(maximum)))) + 2
    if len(text) > width or not _DIGITS.fullmatch(text):
        raise NumberError(f"{quoted(text, _QUOTE)} is not a whole number; {accepted}")
    if text.startswith("-") and minimum >= 0:
        raise NumberError(f"{quoted(text, _QUOTE)} is negative; {accepted}")
    number = int(text)
    if not minimum <= number <= maximum:
        raise NumberError(f"{number} is out of range; {accepted}")
    return number
