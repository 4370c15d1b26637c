"""kubesim's custom-resource schema check: compile once per CRD version, then per object.

Prints microseconds per prune+check of a Widget (the schema of tests/kubesim/test_cr_schemas.py,
which uses the keywords Istio's CRDs use) with 1, 20 and 100 HTTP routes, and the one-off compile
time. Numbers only (`make bench`); the cost a request adds is what matters beside an apply's
~0.7 ms.
"""

from __future__ import annotations

import json
import time

import pytest

from kubesim.cr_schemas import CrSchema, check_object, prune_object
from tests.kubesim.test_cr_schemas import SCHEMA, widget

pytestmark = pytest.mark.bench

ROUNDS = 300


def test_schema_check_cost_per_object() -> None:
    started = time.perf_counter()
    schema = CrSchema(SCHEMA)
    assert schema.root is not None
    compile_ms = (time.perf_counter() - started) * 1000
    print(f"\nWidget schema compiled in {compile_ms:.2f} ms (once per CRD version)")
    for routes in (1, 20, 100):
        obj = widget(
            "w",
            host="web",
            tags=["a"],
            http=[
                {"route": [{"destination": {"host": f"h{i}"}, "weight": 10}]} for i in range(routes)
            ],
        )
        copies = [json.loads(json.dumps(obj)) for _ in range(ROUNDS)]
        started = time.perf_counter()
        for copy in copies:
            prune_object(schema, copy)
            assert not check_object(schema, copy)
        per_object = (time.perf_counter() - started) / ROUNDS * 1e6
        size = len(json.dumps(obj))
        print(f"  {routes:3d} routes ({size:6d} bytes): {per_object:8.1f} us per prune + check")
