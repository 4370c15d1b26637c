"""Go-style durations: what kubectl and helm users type, parsed strictly."""

from __future__ import annotations

import pytest

from serving.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("1.5", 1.5),
        ("30s", 30.0),
        ("500ms", 0.5),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("2m3.5s", 123.5),
        ("1h0m0s", 3600.0),
        ("250us", 0.00025),
        (" 10s ", 10.0),
    ],
)
def test_accepted(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    ["", "s", "-5s", "5 m", "5x", "1h30", "²", "--5", "1e3s", "5s5", "9" * 4301, "99999999h"],
)
def test_refused_with_a_short_message(text: str) -> None:
    with pytest.raises(DurationError) as refused:
        parse_duration(text)
    assert len(str(refused.value)) < 120


def test_formatted_the_go_way() -> None:
    assert [format_duration(s) for s in (0.25, 1.5, 90, 3600, 5400, 3725)] == [
        "250ms",
        "1.5s",
        "1m30s",
        "1h",
        "1h30m",
        "1h2m5s",
    ]
