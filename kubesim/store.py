"""The in-memory object store: one global resourceVersion, an event history, live watchers.

Stored objects are never mutated: every write stores a new dict, so snapshots handed to watch
streams and list responses stay valid. Everything runs on the server's event loop, so the store
needs no locks.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubesim.errors import ApiError
from kubesim.objects import Obj

StorageKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)
Location = tuple[StorageKey, str, str]  # (storage key, namespace, name)


@dataclass(frozen=True, kw_only=True)
class StoredEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    storage_key: StorageKey
    obj: Obj


@dataclass(eq=False, kw_only=True)
class Watcher:
    """One open watch: events for one storage key that pass `accepts` land in `queue`."""

    storage_key: StorageKey
    namespace: str | None
    accepts: Callable[[Obj], bool]
    queue: asyncio.Queue[StoredEvent | None] = field(default_factory=asyncio.Queue)


Listener = Callable[[StoredEvent], None]


class Store:
    def __init__(self, *, history: int = 20000) -> None:
        self.rv = 0
        self._tables: dict[StorageKey, dict[ObjKey, Obj]] = {}
        self._history: deque[StoredEvent] = deque(maxlen=history)
        # The oldest resourceVersion from which a watch can still replay every event.
        self._compacted = 0
        self._watchers: set[Watcher] = set()
        self._listeners: list[Listener] = []
        self._by_uid: dict[str, Location] = {}
        self._dependents: dict[str, set[Location]] = {}
        self.dirty = False

    # --- reading --------------------------------------------------------------------------

    def get(self, sk: StorageKey, namespace: str, name: str) -> Obj | None:
        return self._tables.get(sk, {}).get((namespace, name))

    def objects(self, sk: StorageKey, namespace: str | None = None) -> list[Obj]:
        table = self._tables.get(sk, {})
        if namespace is None:
            return list(table.values())
        return [o for (ns, _), o in table.items() if ns == namespace]

    def count(self, sk: StorageKey) -> int:
        return len(self._tables.get(sk, {}))

    def storage_keys(self) -> list[StorageKey]:
        return [sk for sk, table in self._tables.items() if table]

    def by_uid(self, uid: str) -> Location | None:
        return self._by_uid.get(uid)

    def dependents(self, owner_uid: str) -> list[Location]:
        return sorted(self._dependents.get(owner_uid, ()))

    def all_locations(self) -> Iterator[Location]:
        for sk, table in self._tables.items():
            for ns, name in list(table):
                yield (sk, ns, name)

    # --- writing --------------------------------------------------------------------------

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, sk: StorageKey, obj: Obj, event_type: str) -> Obj:
        """Store `obj` (whose metadata.resourceVersion the caller set from `next_rv`)."""
        md = obj["metadata"]
        key = (md.get("namespace", ""), md["name"])
        table = self._tables.setdefault(sk, {})
        old = table.get(key)
        if old is not None:
            self._unindex(sk, old)
        table[key] = obj
        self._index(sk, obj)
        self._emit(
            StoredEvent(rv=int(md["resourceVersion"]), type=event_type, storage_key=sk, obj=obj)
        )
        return obj

    def remove(self, sk: StorageKey, namespace: str, name: str, final: Obj) -> None:
        """Remove an object; `final` is its last state, with a new resourceVersion."""
        table = self._tables.get(sk, {})
        old = table.pop((namespace, name), None)
        if old is not None:
            self._unindex(sk, old)
        self._emit(
            StoredEvent(
                rv=int(final["metadata"]["resourceVersion"]),
                type="DELETED",
                storage_key=sk,
                obj=final,
            )
        )

    def drop_table(self, sk: StorageKey) -> None:
        for obj in list(self._tables.get(sk, {}).values()):
            self._unindex(sk, obj)
        self._tables.pop(sk, None)

    def _index(self, sk: StorageKey, obj: Obj) -> None:
        md = obj["metadata"]
        loc = (sk, md.get("namespace", ""), md["name"])
        if uid := md.get("uid"):
            self._by_uid[uid] = loc
        for ref in md.get("ownerReferences") or []:
            if owner := ref.get("uid"):
                self._dependents.setdefault(owner, set()).add(loc)

    def _unindex(self, sk: StorageKey, obj: Obj) -> None:
        md = obj["metadata"]
        loc = (sk, md.get("namespace", ""), md["name"])
        self._by_uid.pop(md.get("uid", ""), None)
        for ref in md.get("ownerReferences") or []:
            deps = self._dependents.get(ref.get("uid", ""))
            if deps is not None:
                deps.discard(loc)
                if not deps:
                    self._dependents.pop(ref.get("uid", ""), None)

    # --- events ---------------------------------------------------------------------------

    def _emit(self, event: StoredEvent) -> None:
        self.dirty = True
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(event)
        for watcher in self._watchers:
            if watcher.storage_key != event.storage_key:
                continue
            ns = event.obj["metadata"].get("namespace", "")
            if watcher.namespace is not None and ns != watcher.namespace:
                continue
            if watcher.accepts(event.obj):
                watcher.queue.put_nowait(event)
        for listener in self._listeners:
            listener(event)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def events_after(self, rv: int, watcher: Watcher) -> list[StoredEvent]:
        """Events newer than `rv` for `watcher`; 410 Expired when history no longer has them."""
        if rv < self._compacted:
            raise ApiError.gone(f"too old resource version: {rv} ({self._compacted + 1})")
        out = []
        for event in self._history:
            if event.rv <= rv or event.storage_key != watcher.storage_key:
                continue
            ns = event.obj["metadata"].get("namespace", "")
            if watcher.namespace is not None and ns != watcher.namespace:
                continue
            if watcher.accepts(event.obj):
                out.append(event)
        return out

    def subscribe(self, watcher: Watcher) -> None:
        self._watchers.add(watcher)

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher.queue.put_nowait(None)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write every object and the resourceVersion counter atomically to a JSON file."""
        state = {
            "resourceVersion": self.rv,
            "objects": [
                {"group": sk[0], "resource": sk[1], "object": obj}
                for sk, table in self._tables.items()
                for obj in table.values()
            ],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".kubesim-state-")
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, separators=(",", ":"))
        os.replace(tmp, path)
        self.dirty = False

    def load(self, path: Path) -> list[Obj]:
        """Read a state file written by `save`; returns the objects loaded (no events)."""
        state: dict[str, Any] = json.loads(path.read_text())
        loaded = []
        for item in state.get("objects", []):
            sk = (item["group"], item["resource"])
            obj = item["object"]
            md = obj["metadata"]
            self._tables.setdefault(sk, {})[(md.get("namespace", ""), md["name"])] = obj
            self._index(sk, obj)
            loaded.append(obj)
        self.rv = int(state.get("resourceVersion", 0))
        self._compacted = self.rv
        self.dirty = False
        return loaded
