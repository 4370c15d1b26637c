"""Field sets: which fields an object sets, as paths, and their `FieldsV1` form in managedFields.

A path is a tuple of FieldsV1 keys: `f:<field>` for a map key, `k:<json>` for an item of an
associative list (named by its merge key), `v:<json>` for a value of a set list. A set holds a
path when that field is owned: a leaf (scalar, atomic list, empty map) or a list item itself.
"""

from __future__ import annotations

import json
from typing import Any

from kubesim.schemas import is_set_list, list_map_keys, map_key_of

Path = tuple[str, ...]
FieldValues = dict[Path, Any]

# Marks a list item's own presence in FieldValues (never compared as a value).
PRESENT = object()

# System-owned metadata that no manager owns.
_SYSTEM_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def _key_element(item: Any, keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps(map_key_of(item, keys), separators=(",", ":"), sort_keys=True)


def field_values(obj: dict[str, Any], kind: str | None, *, with_status: bool) -> FieldValues:
    """Every owned path of `obj` with its value (PRESENT for list items)."""
    out: FieldValues = {}
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or value is None:
            continue
        if key == "status" and not with_status:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mkey, mvalue in value.items():
                if mkey in _SYSTEM_METADATA or mvalue is None:
                    continue
                _walk(mvalue, ("f:metadata", f"f:{mkey}"), ("metadata", mkey), kind, out)
            continue
        _walk(value, (f"f:{key}",), (key,), kind, out)
    return out


def _walk(
    value: Any, path: Path, names: tuple[str, ...], kind: str | None, out: FieldValues
) -> None:
    if isinstance(value, dict):
        if not value:
            out[path] = value
            return
        for key, child in value.items():
            if child is not None:
                _walk(child, (*path, f"f:{key}"), (*names, key), kind, out)
        return
    if isinstance(value, list):
        keys = list_map_keys(kind, names)
        if keys is not None and value and all(isinstance(i, dict) for i in value):
            for item in value:
                item_path = (*path, _key_element(item, keys))
                out[item_path] = PRESENT
                for key, child in item.items():
                    if child is not None:
                        _walk(child, (*item_path, f"f:{key}"), (*names, key), kind, out)
            return
        if is_set_list(names):
            for item in value:
                out[(*path, "v:" + json.dumps(item, separators=(",", ":")))] = PRESENT
            return
    out[path] = value


def to_fields_v1(paths: set[Path] | frozenset[Path]) -> dict[str, Any]:
    """The FieldsV1 tree of a set of paths."""
    root: dict[str, Any] = {}
    for path in paths:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        node["."] = node.get(".", {})
    return _finish(root)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    owned = "." in node
    children = {k: _finish(v) for k, v in sorted(node.items()) if k != "."}
    if owned and children:
        return {".": {}, **children}
    return children


def from_fields_v1(tree: dict[str, Any]) -> set[Path]:
    paths: set[Path] = set()

    def visit(node: dict[str, Any], path: Path) -> None:
        children = [k for k in node if k != "."]
        if path and ("." in node or not children):
            paths.add(path)
        for key in children:
            child = node[key]
            visit(child if isinstance(child, dict) else {}, (*path, key))

    visit(tree, ())
    return paths


def remove_path(obj: dict[str, Any], path: Path) -> None:
    """Remove the field or list item at `path` from `obj`, if present."""
    parent: Any = obj
    for element in path[:-1]:
        parent = _step(parent, element)
        if parent is None:
            return
    last = path[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        index = _index(parent, last)
        if index is not None:
            parent.pop(index)


def _step(node: Any, element: str) -> Any:
    if element.startswith("f:"):
        return node.get(element[2:]) if isinstance(node, dict) else None
    if isinstance(node, list):
        index = _index(node, element)
        return None if index is None else node[index]
    return None


def _index(items: list[Any], element: str) -> int | None:
    if element.startswith("k:"):
        wanted = json.loads(element[2:])
        keys = tuple(wanted)
        for i, item in enumerate(items):
            if map_key_of(item, keys) == wanted:
                return i
    elif element.startswith("v:"):
        value = json.loads(element[2:])
        if value in items:
            return items.index(value)
    return None


def render_path(path: Path) -> str:
    """`.spec.template.spec.containers[name="app"].image`, as conflict causes name fields."""
    out = []
    for element in path:
        if element.startswith("f:"):
            out.append("." + element[2:])
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        else:
            out.append(f"[{element[2:]}]")
    return "".join(out)
