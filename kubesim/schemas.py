"""How lists merge: the merge keys of the built-in types' associative lists, and set lists.

Strategic merge patch and server-side apply both read this table. Lists not named here are
atomic (replaced whole), as they are for custom resources without list-type extensions.
"""

from __future__ import annotations

from typing import Any

CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})

# Last field name -> merge key, for every built-in kind.
_MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
    "webhooks": "name",
    "resourceClaims": "name",
    "secrets": "name",
}

# Primitive lists merged as sets.
_SET_LISTS = frozenset({("metadata", "finalizers")})


def list_merge_key(kind: str | None, path: tuple[str, ...]) -> str | None:
    """Merge key of the list at `path` (field names, no indexes), or None when it is atomic.

    `kind` is None for custom resources, whose lists are atomic except metadata's.
    """
    if not path:
        return None
    if path == ("metadata", "ownerReferences"):
        return "uid"
    if kind is None:
        return None
    last = path[-1]
    if last == "ports":
        if len(path) >= 2 and path[-2] in CONTAINER_LISTS:
            return "containerPort"
        if kind == "Service" and path == ("spec", "ports"):
            return "port"
        return None
    if last == "secrets" and kind != "ServiceAccount":
        return None
    if last == "conditions" and path[0] != "status":
        return None
    return _MERGE_KEYS.get(last)


# Server-side apply keys some lists by more than the merge key, with a default for a missing key.
_EXTRA_APPLY_KEYS = {"containerPort": ("containerPort", "protocol"), "port": ("port", "protocol")}
KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}


def list_map_keys(kind: str | None, path: tuple[str, ...]) -> tuple[str, ...] | None:
    """The keys identifying items of an associative list under server-side apply."""
    merge_key = list_merge_key(kind, path)
    if merge_key is None:
        return None
    return _EXTRA_APPLY_KEYS.get(merge_key, (merge_key,))


def map_key_of(item: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """An item's identity under `keys`, defaults filled in (`protocol` is TCP when absent)."""
    if not isinstance(item, dict):
        return {}
    out = {}
    for key in keys:
        value = item.get(key, KEY_DEFAULTS.get(key))
        if value is not None:
            out[key] = value
    return out


def is_set_list(path: tuple[str, ...]) -> bool:
    return path in _SET_LISTS


def item_key(item: Any, merge_key: str) -> Any:
    """The identity of one associative-list item (None when the key field is missing)."""
    if isinstance(item, dict):
        return item.get(merge_key)
    return None
