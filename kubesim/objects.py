"""Small operations on JSON-shaped Kubernetes objects shared by the server's layers."""

from __future__ import annotations

import datetime
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


def meta(obj: Obj) -> Obj:
    """`metadata` of an object, created when absent."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def labels_of(obj: Obj) -> dict[str, str]:
    labels = obj.get("metadata", {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def conditions_true(obj: Obj, cond_type: str) -> bool:
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == cond_type:
            return bool(cond.get("status") == "True")
    return False
