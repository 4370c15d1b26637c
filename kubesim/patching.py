"""The three patch formats of PATCH: JSON patch, JSON merge patch and strategic merge patch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubesim.errors import ApiError
from kubesim.objects import copy_json
from kubesim.schemas import is_set_list, item_key, list_merge_key

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
APPLY_PATCH_CBOR = "application/apply-patch+cbor"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)


# --- RFC 6902 JSON patch -------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError) as exc:
                raise ApiError(422, "Invalid", f"invalid index {part!r}") from exc
        else:
            raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
    return doc


def _add(doc: Any, parts: list[str], value: Any, *, replace: bool) -> Any:
    if not parts:
        return value
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise ApiError(
                422,
                "Invalid",
                f"replace operation does not apply: doc is missing key: /{'/'.join(parts)}",
            )
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                index = int(last)
            except ValueError as exc:
                raise ApiError(422, "Invalid", f"invalid index {last!r}") from exc
            if index < 0 or index > len(parent) or (replace and index == len(parent)):
                raise ApiError(422, "Invalid", f"index out of range: {index}")
            if replace:
                parent[index] = value
            else:
                parent.insert(index, value)
    else:
        raise ApiError(422, "Invalid", f"doc is missing path: /{'/'.join(parts)}")
    return doc


def _remove(doc: Any, parts: list[str]) -> Any:
    if not parts:
        raise ApiError(422, "Invalid", "cannot remove the whole document")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        try:
            return parent.pop(int(last))
        except (ValueError, IndexError) as exc:
            raise ApiError(422, "Invalid", f"invalid index {last!r}") from exc
    raise ApiError(422, "Invalid", f"unable to remove nonexistent key: /{'/'.join(parts)}")


def apply_json_patch(doc: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError.bad_request("json patch must be a list of operations")
    doc = copy_json(doc)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError.bad_request(f"invalid json patch operation: {op!r}")
        kind, parts = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _add(doc, parts, copy_json(op.get("value")), replace=False)
        elif kind == "replace":
            doc = _add(doc, parts, copy_json(op.get("value")), replace=True)
        elif kind == "remove":
            _remove(doc, parts)
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = _remove(doc, source) if kind == "move" else copy_json(_walk(doc, source))
            doc = _add(doc, parts, value, replace=False)
        elif kind == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"testing value {op['path']} failed")
        else:
            raise ApiError.bad_request(f"unexpected json patch operation {kind!r}")
    return doc


# --- RFC 7386 JSON merge patch -------------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy_json(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# --- strategic merge patch -----------------------------------------------------------------

_ORDER = "$setElementOrder/"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strip_directives(value: Any) -> Any:
    """A copy with every `$patch`/`$setElementOrder`/`$retainKeys`/… key removed."""
    if isinstance(value, dict):
        return {k: strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [
            strip_directives(v)
            for v in value
            if not (isinstance(v, dict) and v.get("$patch") in ("delete", "replace"))
        ]
    return value


def apply_strategic_merge_patch(original: Any, patch: Any, kind: str) -> Any:
    if not isinstance(patch, dict):
        raise ApiError.bad_request("strategic merge patch must be a JSON object")
    return _smp_map(original if isinstance(original, dict) else {}, patch, kind, ())


def _smp_map(
    orig: dict[str, Any], patch: dict[str, Any], kind: str, path: tuple[str, ...]
) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return strip_directives(patch)  # type: ignore[no-any-return]
    merge = _MapMerge(kind=kind, path=path, result=dict(orig))
    for key, value in patch.items():
        if key.startswith("$"):
            merge.apply_directive(key, value)
        else:
            merge.merge_field(key, value)
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        merge.result = {k: v for k, v in merge.result.items() if k in retain}
    merge.reorder(orig)
    return merge.result


@dataclass(kw_only=True)
class _MapMerge:
    """One map's strategic merge: the result so far and the lists whose order is settled last."""

    kind: str
    path: tuple[str, ...]
    result: dict[str, Any]
    orders: dict[str, list[Any]] = field(default_factory=dict)
    """`$setElementOrder` lists, by field."""
    merged_lists: dict[str, list[Any]] = field(default_factory=dict)
    """Merged list fields -> the patch's own items."""

    def apply_directive(self, key: str, value: Any) -> None:
        """`$setElementOrder/f` is remembered, `$deleteFromPrimitiveList/f` applied at once."""
        if key.startswith(_ORDER):
            self.orders[key[len(_ORDER) :]] = value if isinstance(value, list) else []
        elif key.startswith(_DELETE_PRIMITIVE):
            field_name = key[len(_DELETE_PRIMITIVE) :]
            current = self.result.get(field_name)
            if isinstance(current, list) and isinstance(value, list):
                self.result[field_name] = [v for v in current if v not in value]

    def merge_field(self, key: str, value: Any) -> None:
        child = (*self.path, key)
        if value is None:
            self.result.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                self.result.pop(key, None)
                return
            current = self.result.get(key)
            self.result[key] = _smp_map(
                current if isinstance(current, dict) else {}, value, self.kind, child
            )
        elif isinstance(value, list):
            self._merge_list(key, value, child)
        else:
            self.result[key] = value

    def _merge_list(self, key: str, value: list[Any], child: tuple[str, ...]) -> None:
        current = self.result.get(key)
        merge_key = list_merge_key(self.kind, child)
        if merge_key is not None:
            self.result[key] = _smp_list(
                current if isinstance(current, list) else [], value, merge_key, self.kind, child
            )
            self.merged_lists[key] = [
                v for v in value if not (isinstance(v, dict) and "$patch" in v)
            ]
        elif is_set_list(child):
            merged = list(current) if isinstance(current, list) else []
            merged.extend(v for v in value if v not in merged)
            self.result[key] = merged
            self.merged_lists[key] = value
        else:
            self.result[key] = strip_directives(value)

    def reorder(self, orig: dict[str, Any]) -> None:
        """As the apiserver: the patch's items (or `$setElementOrder`'s) in that order, the
        items only the server had in theirs, the two interleaved by the server's order."""
        for field_name in {*self.orders, *self.merged_lists}:
            current = self.result.get(field_name)
            live = orig.get(field_name)
            if isinstance(current, list):
                self.result[field_name] = _reorder(
                    current,
                    self.orders.get(field_name, self.merged_lists.get(field_name, [])),
                    live if isinstance(live, list) else [],
                    list_merge_key(self.kind, (*self.path, field_name)),
                )


def _smp_list(
    orig: list[Any], patch: list[Any], merge_key: str, kind: str, path: tuple[str, ...]
) -> list[Any]:
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [strip_directives(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    result = list(orig)
    for item in patch:
        if not isinstance(item, dict):
            result.append(item)
            continue
        key = item_key(item, merge_key)
        index = next((i for i, o in enumerate(result) if item_key(o, merge_key) == key), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(strip_directives(item))
        else:
            result[index] = _smp_map(result[index], item, kind, path)
    return result


def _reorder(
    items: list[Any], order: list[Any], live: list[Any], merge_key: str | None
) -> list[Any]:
    """The merged `items` ordered as the apiserver's strategic merge does: those named by
    `order` (`$setElementOrder`, else the patch list) in its order, the server-only ones in
    the live order, interleaved: a server-only item goes first while the live list has it
    before the next ordered one (apimachinery's `normalizeElementOrder`)."""

    def identity(v: Any) -> Any:
        return item_key(v, merge_key) if merge_key and isinstance(v, dict) else v

    wanted = [identity(o) for o in order]
    placed = [
        next(i for i in items if identity(i) == w)
        for w in dict.fromkeys(wanted)
        if any(identity(i) == w for i in items)
    ]
    rest = [i for i in items if identity(i) not in wanted]
    live_keys = [identity(v) for v in live]

    def live_index(v: Any) -> int:
        key = identity(v)
        return live_keys.index(key) if key in live_keys else -1

    merged: list[Any] = []
    while placed or rest:
        if placed and rest:
            left, right = live_index(rest[0]), live_index(placed[0])
            take_rest = left >= 0 and right >= 0 and left < right
        else:
            take_rest = bool(rest)
        merged.append(rest.pop(0) if take_rest else placed.pop(0))
    return merged
