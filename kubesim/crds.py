"""CustomResourceDefinitions: the resource types one serves, the status it is given, and the
registry kept in step with the stored CRDs."""

from __future__ import annotations

from typing import Any

from kubesim.cr_schemas import CrSchema
from kubesim.objects import Obj, copy_json, now_rfc3339
from kubesim.resources import ResourceRegistry, ResourceType
from kubesim.store import Store

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


def served_types(crd: Obj) -> list[ResourceType]:
    """The types a CRD serves, one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group", "")
    versions = [v for v in spec.get("versions") or [] if isinstance(v, dict)]
    types = []
    for version in versions:
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        subs = tuple(s for s in ("status", "scale") if s in subresources)
        holder = version.get("schema")
        schema = holder.get("openAPIV3Schema") if isinstance(holder, dict) else None
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                plural=names.get("plural", ""),
                singular=names.get("singular") or str(names.get("kind", "")).lower(),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subs,
                tracks_generation=True,
                custom=True,
                schema=CrSchema(schema) if isinstance(schema, dict) else None,
            )
        )
    return types


def status_for(crd: Obj, previous: dict[str, Any] | None) -> dict[str, Any]:
    """`Established` and `NamesAccepted`, accepted names and stored versions."""
    spec = crd.get("spec") or {}
    now = now_rfc3339()
    old_conditions = {c.get("type"): c for c in (previous or {}).get("conditions") or []}

    def condition(kind: str, reason: str, message: str) -> dict[str, Any]:
        old = old_conditions.get(kind)
        since = old["lastTransitionTime"] if old and old.get("status") == "True" else now
        return {
            "type": kind,
            "status": "True",
            "lastTransitionTime": since,
            "reason": reason,
            "message": message,
        }

    stored = list((previous or {}).get("storedVersions") or [])
    storage = next(
        (v["name"] for v in spec.get("versions") or [] if isinstance(v, dict) and v.get("storage")),
        None,
    )
    if storage and storage not in stored:
        stored.append(storage)
    return {
        "conditions": [
            condition("NamesAccepted", "NoConflicts", "no conflicts found"),
            condition(
                "Established", "InitialNamesAccepted", "the initial names have been accepted"
            ),
        ],
        "acceptedNames": dict(spec.get("names") or {}),
        "storedVersions": stored,
    }


class CrdTypes:
    """Serves what each stored CRD declares; objects of a type no longer served are dropped."""

    def __init__(self, store: Store, registry: ResourceRegistry) -> None:
        self.store = store
        self.registry = registry

    def register(self, crd: Obj) -> None:
        types = served_types(crd)
        name = crd["metadata"]["name"]
        old_keys = {t.storage_key for t in self.registry.crd_types(name)}
        self.registry.set_crd_types(name, types)
        for key in old_keys - {t.storage_key for t in types}:
            self._drop_objects(key)

    def unregister(self, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        keys = {t.storage_key for t in self.registry.crd_types(name)}
        for key in keys:
            self._drop_objects(key)
        self.registry.set_crd_types(name, [])

    def _drop_objects(self, key: tuple[str, str]) -> None:
        for obj in self.store.objects(key):
            final = copy_json(obj)
            final["metadata"]["resourceVersion"] = str(self.store.next_rv())
            self.store.remove(
                key, final["metadata"].get("namespace", ""), final["metadata"]["name"], final
            )
        self.store.drop_table(key)
