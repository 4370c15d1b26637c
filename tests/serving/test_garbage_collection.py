"""Server processes freeze their start-up heap and collect young objects less often."""

from __future__ import annotations

import json
import subprocess
import sys

from serving.garbage_collection import YOUNG_GENERATION_THRESHOLD


def test_tune_for_server_freezes_the_heap_and_raises_the_threshold() -> None:
    # In a child process: the collector's settings are process-wide.
    script = (
        "import gc, json\n"
        "from serving.garbage_collection import tune_for_server\n"
        "before = gc.get_threshold()\n"
        "tune_for_server()\n"
        "print(json.dumps([before, gc.get_threshold(), gc.get_freeze_count()]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    before, after, frozen = json.loads(out)
    assert after == [YOUNG_GENERATION_THRESHOLD, before[1], before[2]]
    assert frozen > 1000  # the imported modules' objects
