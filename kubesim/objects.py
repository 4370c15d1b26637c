"""Small operations on JSON-shaped Kubernetes objects shared by the server's layers."""

from __future__ import annotations

import datetime
import random
from typing import Any

Obj = dict[str, Any]


def copy_json(value: Any) -> Any:
    """Deep copy of JSON data (dicts, lists, scalars): several times faster than `copy.deepcopy`."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, dict | list) else v for v in value]
    return value


def drop_nulls(value: Any) -> Any:
    """Remove null map values at every depth, as decoding into typed objects does."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def now_rfc3339() -> str:
    """The current time as the apiserver writes timestamps (seconds, UTC, `Z`)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(length: int = 5) -> str:
    """A random name suffix, of the letters and digits the apiserver's generated names use."""
    return "".join(random.choice(_NAME_CHARS) for _ in range(length))
