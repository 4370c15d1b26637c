"""Which fields one field manager owns, and which of them differ between two versions of an object.

A dry-run apply answers with the object the server would store. Whether that is a change is a
question about meshplane's own fields only: the server's defaults, status and other managers'
fields differ between reads for reasons of their own. The fields a manager owns are in
``metadata.managedFields`` as ``fieldsV1`` sets: ``f:<name>`` for a map key, ``k:<json>`` for an
item of an associative list (by its merge keys), ``v:<json>`` for a value of a set list,
``i:<index>`` for a list position, and ``.`` for the item itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["changed_fields", "owned_fields"]

_MISSING = object()
_PATH_CHARS = 200
"""Longest path reported (a key of long values is cut)."""

FieldSet = dict[str, Any]


def _merge(into: FieldSet, other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if not isinstance(value, Mapping):
            continue
        existing = into.get(key)
        if isinstance(existing, dict):
            _merge(existing, value)
        else:
            merged: FieldSet = {}
            _merge(merged, value)
            into[key] = merged


def owned_fields(obj: Mapping[str, Any] | None, manager: str) -> FieldSet:
    """The union of ``manager``'s field sets on ``obj`` (every operation: Apply and Update)."""
    metadata = (obj or {}).get("metadata")
    entries = metadata.get("managedFields") if isinstance(metadata, Mapping) else None
    owned: FieldSet = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or entry.get("manager") != manager:
            continue
        fields = entry.get("fieldsV1")
        if isinstance(fields, Mapping):
            _merge(owned, fields)
    return owned


def _item_by_keys(value: Any, keys: Mapping[str, Any]) -> Any:
    if not isinstance(value, list):
        return _MISSING
    for item in value:
        if isinstance(item, Mapping) and all(item.get(k) == v for k, v in keys.items()):
            return item
    return _MISSING


def _step(key: str, live: Any, planned: Any, path: str) -> tuple[Any, Any, str] | None:
    """The two values one fieldsV1 key names, and the path to report; None for keys we skip."""
    kind, _, rest = key.partition(":")
    try:
        if kind == "f":
            return (
                live.get(rest, _MISSING) if isinstance(live, Mapping) else _MISSING,
                planned.get(rest, _MISSING) if isinstance(planned, Mapping) else _MISSING,
                f"{path}.{rest}" if path else rest,
            )
        if kind == "k":
            keys = json.loads(rest)
            if not isinstance(keys, dict):
                return None
            named = ",".join(f"{k}={v}" for k, v in sorted(keys.items()))
            return _item_by_keys(live, keys), _item_by_keys(planned, keys), f"{path}[{named}]"
        if kind == "v":
            value = json.loads(rest)
            present = (
                value if isinstance(live, list) and value in live else _MISSING,
                value if isinstance(planned, list) and value in planned else _MISSING,
            )
            return present[0], present[1], f"{path}[{rest}]"
        if kind == "i":
            index = int(rest)

            def at(value: Any) -> Any:
                return value[index] if isinstance(value, list) and index < len(value) else _MISSING

            return at(live), at(planned), f"{path}[{index}]"
    except (ValueError, TypeError):
        return None
    return None


def _compare(fields: Mapping[str, Any], live: Any, planned: Any, path: str, out: list[str]) -> None:
    for key in sorted(fields):
        if key == ".":
            continue
        step = _step(key, live, planned, path)
        if step is None:
            continue
        before, after, where = step
        if before is _MISSING or after is _MISSING:
            if before is not after:
                out.append(where[:_PATH_CHARS])
            continue
        children = {k: v for k, v in (fields[key] or {}).items() if k != "."}
        if children and isinstance(before, Mapping | list) and type(before) is type(after):
            _compare(children, before, after, where, out)
        elif before != after:
            out.append(where[:_PATH_CHARS])


def changed_fields(
    live: Mapping[str, Any], planned: Mapping[str, Any], manager: str
) -> tuple[str, ...]:
    """Paths of ``manager``'s fields that differ between ``live`` and ``planned`` (the server's
    dry-run answer), e.g. ``spec.replicas`` or ``spec.template.spec.containers[name=app].image``.

    Compared: every field ``manager`` owns in either version, so a field it would stop setting
    counts as well as one it would set or change.
    """
    fields = owned_fields(live, manager)
    _merge(fields, owned_fields(planned, manager))
    out: list[str] = []
    _compare(fields, live, planned, "", out)
    return tuple(out)
