"""The cluster: every read and write the API offers, with the apiserver's rules, over the store.

HTTP handlers and the simulated controllers both go through this class, so each write gets the
same validation, defaulting, generation, managedFields and watch events. What is checked and
added before a write is `admission`; patch bodies are read by `patch_requests`; cluster IPs
and node ports come from `allocation`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesim import admission, crds
from kubesim.admission import NAMESPACES, check_body, check_rv, merge_subresource
from kubesim.allocation import SERVICES, ServiceAllocator
from kubesim.applying import Target, apply, record_update
from kubesim.errors import ApiError
from kubesim.objects import Obj, copy_json, drop_nulls, now_rfc3339
from kubesim.patch_requests import apply_configuration, check_patch_options, patched
from kubesim.patching import APPLY_PATCH
from kubesim.resources import ResourceRegistry, ResourceType
from kubesim.selectors import FieldRequirement, Requirement, labels_match
from kubesim.store import Store
from kubesim.write_options import INTERNAL, WriteOptions

__all__ = ["NAMESPACES", "PROTECTED_NAMESPACES", "Cluster"]

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def _target(rt: ResourceType, name: str, subresource: str) -> Target:
    return Target(
        kind=None if rt.custom else rt.kind,
        api_version=rt.api_version,
        subresource=subresource,
        group=rt.group,
        plural=rt.plural,
        name=name,
    )


class Cluster:
    def __init__(self, store: Store, registry: ResourceRegistry) -> None:
        self.store = store
        self.registry = registry
        self.allocator = ServiceAllocator(store)
        self.crd_types = crds.CrdTypes(store, registry)
        self._before_delete: list[Callable[[ResourceType, Obj], None]] = []

    # --- views ----------------------------------------------------------------------------

    @staticmethod
    def view(rt: ResourceType, obj: Obj) -> Obj:
        """The object as served at `rt`'s version (custom resources: conversion `None`)."""
        if obj.get("apiVersion") == rt.api_version:
            return obj
        return {**obj, "apiVersion": rt.api_version}

    def type_of(self, storage_key: tuple[str, str]) -> ResourceType | None:
        """The type controllers and garbage collection write a storage key through."""
        return self.registry.for_storage(storage_key)

    # --- reads ----------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        if obj is None:
            raise ApiError.not_found(rt.group, rt.plural, name)
        return self.view(rt, obj)

    def list_objects(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
    ) -> list[Obj]:
        items = self.store.objects(rt.storage_key, namespace if rt.namespaced else None)
        if labels:
            items = [o for o in items if labels_match(labels, o["metadata"].get("labels") or {})]
        if fields:
            items = [o for o in items if all(f.matches(o) for f in fields)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return [self.view(rt, o) for o in items]

    # --- create ---------------------------------------------------------------------------

    def create(
        self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions = INTERNAL
    ) -> Obj:
        body = check_body(rt, body, namespace)
        if (body.get("metadata") or {}).get("resourceVersion"):
            raise ApiError.internal_plain(
                "resourceVersion should not be set on objects to be created"
            )
        obj = drop_nulls(body)
        return self._create(rt, namespace, obj, opts, record=True)

    def _create(
        self, rt: ResourceType, namespace: str, obj: Obj, opts: WriteOptions, *, record: bool
    ) -> Obj:
        md = admission.new_metadata(self.store, rt, namespace, obj)
        if rt.has_status and rt.storage_key != NAMESPACES:
            obj.pop("status", None)
        admission.prune(rt, obj, opts)
        admission.validate(rt, obj, metadata_only=True)
        admission.default(rt, obj)
        if rt.storage_key == SERVICES:
            with self.allocator.allocating(dry_run=opts.dry_run):
                self.allocator.allocate(obj)
        admission.system_status(rt, obj, None)
        admission.validate(rt, obj, extra=admission.schema_problems(rt, obj, opts, ""))
        if record and opts.manager:
            record_update(
                None, obj, manager=opts.manager, target=_target(rt, md.get("name", ""), "")
            )
        if opts.dry_run:
            return obj
        return self._store(rt, obj, "ADDED")

    # --- update ---------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions = INTERNAL,
        *,
        subresource: str = "",
    ) -> Obj:
        body = check_body(rt, body, namespace)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise ApiError.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        old = self.get(rt, namespace, name)
        check_rv(rt, old, (body.get("metadata") or {}).get("resourceVersion"))
        new = merge_subresource(rt, old, drop_nulls(body), subresource)
        return self._finish_update(rt, old, new, opts, subresource=subresource, record=True)

    def _finish_update(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        opts: WriteOptions,
        *,
        subresource: str,
        record: bool,
    ) -> Obj:
        md = admission.kept_metadata(rt, old, new)
        admission.prune(rt, new, opts, "status" if subresource == "status" else "")
        if subresource != "status":
            admission.validate(rt, new, metadata_only=True)
        admission.default(rt, new)
        admission.next_generation(rt, old, new, subresource)
        if rt.storage_key == SERVICES:
            with self.allocator.allocating(dry_run=opts.dry_run):
                self.allocator.keep(old, new)
        admission.system_status(rt, new, old)
        admission.validate(rt, new, extra=admission.schema_problems(rt, new, opts, subresource))
        if record and opts.manager:
            target = _target(rt, md.get("name", ""), subresource)
            record_update(old, new, manager=opts.manager, target=target)
        old_md = old["metadata"]
        stored = self.store.get(rt.storage_key, old_md.get("namespace", ""), old_md["name"])
        if new == self.view(rt, stored or {}):
            return old  # nothing changed: no new resourceVersion, no event
        if opts.dry_run:
            return new
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            return self._remove(rt, new)
        return self._store(rt, new, "MODIFIED")

    # --- patch ----------------------------------------------------------------------------

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        *,
        opts: WriteOptions = INTERNAL,
        subresource: str = "",
    ) -> Obj:
        if content_type == APPLY_PATCH:
            return self._apply(rt, namespace, name, raw, opts, subresource=subresource)
        check_patch_options(opts)
        old = self.get(rt, namespace, name)
        new_obj = patched(rt, old, content_type, raw)
        patched_md = new_obj.get("metadata") or {}
        if patched_md.get("name", name) != name:
            raise ApiError.bad_request("the name of the object cannot be changed by a patch")
        check_rv(rt, old, patched_md.get("resourceVersion"))
        new = merge_subresource(rt, old, drop_nulls(new_obj), subresource)
        return self._finish_update(rt, old, new, opts, subresource=subresource, record=True)

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        opts: WriteOptions,
        *,
        subresource: str,
    ) -> Obj:
        config = apply_configuration(rt, namespace, name, raw, opts, subresource=subresource)
        manager = opts.manager or ""
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        target = _target(rt, name, subresource)
        if stored is None:
            if subresource:
                raise ApiError.not_found(rt.group, rt.plural, name)
            obj = apply(None, config, manager=manager, force=opts.force, target=target)
            obj["metadata"]["name"] = name
            return self._create(rt, namespace, obj, opts, record=False)
        old = self.view(rt, stored)
        check_rv(rt, old, (config.get("metadata") or {}).get("resourceVersion"))
        new = apply(old, config, manager=manager, force=opts.force, target=target)
        if subresource != "status" and rt.has_status:
            new = merge_subresource(rt, old, new, "")
        return self._finish_update(rt, old, new, opts, subresource=subresource, record=False)

    # --- internal writes (controllers) ----------------------------------------------------

    def write_status(self, rt: ResourceType, obj: Obj, status: dict[str, Any]) -> Obj:
        """Replace an object's status as a controller would through `/status`."""
        if obj.get("status") == status:
            return obj
        new = copy_json(obj)
        new["status"] = status
        return self._finish_update(rt, obj, new, INTERNAL, subresource="status", record=False)

    def write(self, rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """Replace a whole object as a controller would with PUT (status kept as given)."""
        return self._finish_update(rt, old, new, INTERNAL, subresource="", record=False)

    # --- delete ---------------------------------------------------------------------------

    def on_before_delete(self, hook: Callable[[ResourceType, Obj], None]) -> None:
        self._before_delete.append(hook)

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        *,
        propagation: str | None = None,
        preconditions: dict[str, Any] | None = None,
        opts: WriteOptions = INTERNAL,
    ) -> Obj:
        obj = self.get(rt, namespace, name)
        md = obj["metadata"]
        admission.check_preconditions(rt, md, preconditions or {})
        if rt.storage_key == NAMESPACES and name in PROTECTED_NAMESPACES:
            raise ApiError.forbidden("", "namespaces", name, "this namespace may not be deleted")
        if opts.dry_run:
            return obj
        if md.get("deletionTimestamp"):
            return obj
        finalizers = list(md.get("finalizers") or [])
        if propagation == "Foreground" and self.store.dependents(md.get("uid", "")):
            finalizers.append("foregroundDeletion")
        elif propagation == "Orphan" or (propagation is None and "orphan" in finalizers):
            self._orphan_dependents(md.get("uid", ""))
        if rt.storage_key == NAMESPACES:
            return self._put_terminating(rt, obj, phase="Terminating")
        if finalizers:
            return self._put_terminating(rt, obj, finalizers=finalizers)
        return self._remove(rt, obj)

    def _put_terminating(
        self, rt: ResourceType, obj: Obj, *, finalizers: list[str] | None = None, phase: str = ""
    ) -> Obj:
        """Mark `obj` deleted; it stays until its finalizers (or its namespace's) are done."""
        new: Obj = copy_json(obj)
        md = new["metadata"]
        if finalizers is not None:
            md["finalizers"] = finalizers
        md["deletionTimestamp"] = now_rfc3339()
        md["deletionGracePeriodSeconds"] = 0
        if phase:
            new.setdefault("status", {})["phase"] = phase
        return self._store(rt, new, "MODIFIED")

    def _orphan_dependents(self, owner_uid: str) -> None:
        for sk, ns, name in self.store.dependents(owner_uid):
            dep = self.store.get(sk, ns, name)
            dep_rt = self.type_of(sk)
            if dep is None or dep_rt is None:
                continue
            new = copy_json(dep)
            new["metadata"]["ownerReferences"] = [
                r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
            ]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self.write(dep_rt, dep, new)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        for hook in self._before_delete:
            hook(rt, obj)
        final: Obj = copy_json(obj)
        md = final["metadata"]
        md["resourceVersion"] = str(self.store.next_rv())
        self.store.remove(rt.storage_key, md.get("namespace", ""), md["name"], final)
        if rt.storage_key == SERVICES:
            self.allocator.release(final)
        if rt.storage_key == crds.CRD_KEY:
            self.crd_types.unregister(final)
        return final

    def remove_now(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete at once, finalizers and all (namespace and CRD cleanup, garbage collection)."""
        current = self.store.get(
            rt.storage_key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        )
        if current is None:
            return obj
        return self._remove(rt, current)

    # --- storing and CRDs ------------------------------------------------------------------

    def _store(self, rt: ResourceType, obj: Obj, event_type: str) -> Obj:
        """Store `obj` under a new resourceVersion (watchers get `event_type`)."""
        obj["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.put(rt.storage_key, obj, event_type)
        if rt.storage_key == crds.CRD_KEY:
            self.register_crd(obj)
        return obj

    def register_crd(self, crd: Obj) -> None:
        self.crd_types.register(crd)
