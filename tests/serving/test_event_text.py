"""Event text budgets: cut with a marker, never split a character, always under the limit."""

from __future__ import annotations

import pytest

from serving.event_text import EVENT_FIELD_BYTES, TRUNCATION_MARKER, truncate_text
from serving.message_limits import ADAPTER_RESPONSE_BYTES, MAX_EVENT_BYTES


def test_short_text_is_unchanged() -> None:
    assert truncate_text("hello", 5) == "hello"


@pytest.mark.parametrize("text", ["a" * 5000, "é" * 5000, "😀" * 5000, "a" + "😀" * 3000])
def test_long_text_ends_in_the_marker_within_the_budget(text: str) -> None:
    cut = truncate_text(text, 1000)
    encoded = cut.encode("utf-8")
    assert len(encoded) <= 1000
    assert cut.startswith(text[:10])
    kept = cut[: cut.index("… [truncated ")]
    dropped = len(text.encode()) - len(kept.encode())
    assert cut.endswith(TRUNCATION_MARKER.format(dropped=dropped))


def test_budgets_stay_well_below_what_the_coordinator_reads() -> None:
    assert sum(EVENT_FIELD_BYTES.values()) < MAX_EVENT_BYTES // 2
    assert MAX_EVENT_BYTES * 16 == ADAPTER_RESPONSE_BYTES
