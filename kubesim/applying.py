"""Server-side apply and field ownership: merging applied configuration, conflicts, managedFields.

`apply` merges a manager's configuration into the live object, removes fields the manager
applied before and no longer applies (unless someone else owns them) and refuses, with the
apiserver's 409 and causes, to change a field another manager owns to a different value unless
forced. `record_update` does the bookkeeping for ordinary writes (POST, PUT, PATCH).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kubesim.errors import ApiError
from kubesim.fieldsets import (
    PRESENT,
    FieldValues,
    Path,
    field_values,
    from_fields_v1,
    remove_path,
    render_path,
    to_fields_v1,
)
from kubesim.objects import Obj, copy_json, now_rfc3339
from kubesim.schemas import is_set_list, list_map_keys, map_key_of


@dataclass(frozen=True, kw_only=True)
class Target:
    """What the write is to: the schema kind (None for custom resources) and where."""

    kind: str | None
    api_version: str
    subresource: str = ""  # "" or "status"
    group: str = ""
    plural: str = ""
    name: str = ""


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str
    paths: set[Path]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": to_fields_v1(self.paths),
        }
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def same_as(self, other: _Entry) -> bool:
        return (self.manager, self.operation, self.api_version, self.subresource, self.paths) == (
            other.manager,
            other.operation,
            other.api_version,
            other.subresource,
            other.paths,
        )


def _entries(obj: Obj | None) -> list[_Entry]:
    if not obj:
        return []
    out = []
    for raw in obj.get("metadata", {}).get("managedFields") or []:
        out.append(
            _Entry(
                manager=raw.get("manager", ""),
                operation=raw.get("operation", "Update"),
                api_version=raw.get("apiVersion", ""),
                time=raw.get("time", ""),
                subresource=raw.get("subresource", ""),
                paths=from_fields_v1(raw.get("fieldsV1") or {}),
            )
        )
    return out


def _snapshot(entries: list[_Entry]) -> list[_Entry]:
    """Copies to compare with after `entries` change (cheaper than parsing fieldsV1 again)."""
    return [replace(e, paths=set(e.paths)) for e in entries]


def _store_entries(obj: Obj, entries: list[_Entry]) -> None:
    kept = [e.as_json() for e in entries if e.paths]
    if kept:
        obj.setdefault("metadata", {})["managedFields"] = kept
    else:
        obj.get("metadata", {}).pop("managedFields", None)


def merge_applied(
    live: Any, config: Any, kind: str | None, names: tuple[str, ...] = (), *, copy: bool = True
) -> Any:
    """Structural merge of applied configuration into live data (associative lists by key).

    ``copy`` False moves parts of ``config`` the live data lacks into the result as they are:
    for a request's own decoded body, used for nothing else afterwards (copying a large new
    object, e.g. a CRD's schema, was most of an apply's cost).
    """
    if isinstance(config, dict) and isinstance(live, dict):
        result = dict(live)
        for key, value in config.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = merge_applied(live.get(key), value, kind, (*names, key), copy=copy)
        return result
    if isinstance(config, list) and isinstance(live, list):
        keys = list_map_keys(kind, names)
        if keys is not None and all(isinstance(i, dict) for i in config + live):
            result_list = list(live)
            for item in config:
                key = map_key_of(item, keys)
                index = next(
                    (i for i, o in enumerate(result_list) if map_key_of(o, keys) == key), None
                )
                if index is None:
                    result_list.append(copy_json(item) if copy else item)
                else:
                    result_list[index] = merge_applied(
                        result_list[index], item, kind, names, copy=copy
                    )
            return result_list
        if is_set_list(names):
            return list(live) + [v for v in config if v not in live]
    return copy_json(config) if copy else config


def _conflicts(
    entries: list[_Entry], me: tuple[str, str], applied: FieldValues, live: FieldValues
) -> dict[Path, list[_Entry]]:
    found: dict[Path, list[_Entry]] = {}
    for entry in entries:
        if (entry.manager, entry.subresource) == me:
            continue
        for path in entry.paths & applied.keys():
            new = applied[path]
            if new is PRESENT:
                continue
            if path in live and live[path] != new:
                found.setdefault(path, []).append(entry)
    return found


def _conflict_error(target: Target, conflicts: dict[Path, list[_Entry]]) -> ApiError:
    causes = []
    lines = []
    for path, owners in sorted(conflicts.items()):
        for owner in owners:
            field = render_path(path)
            causes.append(
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{owner.manager}"'
                    + (f" using {owner.api_version}" if owner.operation == "Update" else ""),
                    "field": field,
                }
            )
            lines.append(f'- conflict with "{owner.manager}": {field}')
    count = len(causes)
    summary = lines[0][2:] if count == 1 else "\n".join(lines)
    message = f"Apply failed with {count} conflict{'s' if count != 1 else ''}: {summary}"
    qualified = f"{target.plural}.{target.group}" if target.group else target.plural
    return ApiError(
        409,
        "Conflict",
        message,
        details={
            "name": target.name,
            "group": target.group,
            "kind": qualified.split(".")[0],
            "causes": causes,
        },
    )


def apply(live: Obj | None, config: Obj, *, manager: str, force: bool, target: Target) -> Obj:
    """The object after `manager` applies `config`; `live` is None when it does not exist yet.

    `config` is handed over: parts of it become parts of the result, so the caller must not
    use it afterwards.

    The caller defaults and validates the result; managedFields are already set on it.
    """
    with_status = target.subresource == "status"
    applied = field_values(config, target.kind, with_status=with_status)
    if not with_status:
        applied = {p: v for p, v in applied.items() if p[0] != "f:status"}
    else:
        applied = {p: v for p, v in applied.items() if p[0] == "f:status"}
    entries = _entries(live)
    previous = _snapshot(entries)
    me = (manager, target.subresource)
    mine = next(
        (e for e in entries if (e.manager, e.subresource) == me and e.operation == "Apply"), None
    )
    base = copy_json(live) if live is not None else {}
    if live is not None:
        live_values = field_values(live, target.kind, with_status=True)
        conflicts = _conflicts(entries, me, applied, live_values)
        if conflicts and not force:
            raise _conflict_error(target, conflicts)
        for path in conflicts:
            for entry in entries:
                if (entry.manager, entry.subresource) != me:
                    entry.paths.discard(path)
        if mine is not None:
            others = set().union(*(e.paths for e in entries if e is not mine))
            for path in sorted(mine.paths - applied.keys() - others, key=len):
                remove_path(base, path)
    cfg = {k: v for k, v in config.items() if k != "metadata"}
    cfg = {k: v for k, v in cfg.items() if (k == "status") == with_status}
    # `config` is the request's decoded body: its new parts become the object's without a copy.
    merged: Obj = merge_applied(base, cfg, target.kind, copy=False)
    config_meta = {
        k: v
        for k, v in (config.get("metadata") or {}).items()
        if k in ("labels", "annotations", "finalizers", "ownerReferences")
    }
    merged_meta = dict(merged.get("metadata") or {})
    merged_meta.update(merge_applied(merged_meta, config_meta, target.kind, ("metadata",)))
    merged["metadata"] = merged_meta
    if mine is None:
        mine = _Entry(
            manager=manager,
            operation="Apply",
            api_version=target.api_version,
            time="",
            subresource=target.subresource,
            paths=set(),
        )
        entries.append(mine)
    mine.paths = set(applied.keys())
    mine.api_version = target.api_version
    _prune_and_store(merged, entries, target, touched=mine, previous=previous)
    return merged


def record_update(old: Obj | None, new: Obj, *, manager: str, target: Target) -> None:
    """Give `manager` the fields this ordinary write changed, taking them from the others."""
    with_status = target.subresource == "status"
    old_values = field_values(old, target.kind, with_status=with_status) if old else {}
    new_values = field_values(new, target.kind, with_status=with_status)
    changed = {
        p
        for p, v in new_values.items()
        if (p[0] == "f:status") == with_status
        and (p not in old_values or (v is not PRESENT and old_values[p] != v))
    }
    entries = _entries(old) if old else []
    previous = _snapshot(entries)
    if changed:
        for entry in entries:
            entry.paths -= changed
        me = next(
            (
                e
                for e in entries
                if e.manager == manager
                and e.operation == "Update"
                and e.subresource == target.subresource
            ),
            None,
        )
        if me is None:
            me = _Entry(
                manager=manager,
                operation="Update",
                api_version=target.api_version,
                time="",
                subresource=target.subresource,
                paths=set(),
            )
            entries.append(me)
        me.paths |= changed
        me.api_version = target.api_version
        _prune_and_store(new, entries, target, touched=me, previous=previous)
    else:
        _prune_and_store(new, entries, target, touched=None, previous=previous)


def _prune_and_store(
    obj: Obj,
    entries: list[_Entry],
    target: Target,
    *,
    touched: _Entry | None,
    previous: list[_Entry],
) -> None:
    present = field_values(obj, target.kind, with_status=True).keys()
    now = now_rfc3339()
    before = {(e.manager, e.operation, e.subresource): e for e in previous}
    for entry in entries:
        entry.paths &= present
        old = before.get((entry.manager, entry.operation, entry.subresource))
        if entry is touched and (old is None or not entry.same_as(old)):
            entry.time = now
        elif old is not None and entry.same_as(old):
            entry.time = old.time
        elif not entry.time:
            entry.time = now
    _store_entries(obj, entries)
