"""Namespace termination and garbage collection (background and foreground cascades)."""

from __future__ import annotations

import contextlib

from kubesim.cluster import NAMESPACES
from kubesim.controllers.reconciling import SERVICE_ACCOUNTS, ControllerBase
from kubesim.errors import ApiError
from kubesim.objects import copy_json


class LifecycleControllers(ControllerBase):
    # --- namespaces and garbage collection ------------------------------------------------

    def _namespace(self, _: str, name: str) -> None:
        ns_obj = self._get(NAMESPACES, "", name)
        if ns_obj is None:
            return
        if not ns_obj["metadata"].get("deletionTimestamp"):
            if self._get(SERVICE_ACCOUNTS, name, "default") is None:
                self._create(SERVICE_ACCOUNTS, name, {"metadata": {"name": "default"}})
            return
        remaining = 0
        for rt in list(self.cluster.registry):
            if not rt.namespaced or rt.version != self._type(rt.storage_key).version:
                continue
            for obj in self.cluster.store.objects(rt.storage_key, name):
                remaining += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(rt.storage_key, obj)
        still = sum(
            len(self.cluster.store.objects(sk, name)) for sk in self.cluster.store.storage_keys()
        )
        if still:
            if remaining:
                self._later(0.05, ("namespace", "", name))
            return
        if ns_obj["metadata"].get("finalizers"):
            return
        self.cluster.remove_now(self._type(NAMESPACES), ns_obj)

    def _collect(self, owner_uid: str, _: str) -> None:
        """Background cascade: delete dependents whose owners are all gone."""
        store = self.cluster.store
        for sk, ns, name in store.dependents(owner_uid):
            obj = store.get(sk, ns, name)
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                continue
            owners = [r.get("uid") for r in obj["metadata"].get("ownerReferences") or []]
            if all(store.by_uid(uid) is None for uid in owners if uid):
                self._delete(sk, obj)

    def _foreground(self, sk_text: str, loc: str) -> None:
        group, _, plural = sk_text.partition("/")
        ns, _, name = loc.partition("/")
        sk = (group, plural)
        obj = self._get(sk, ns, name)
        if obj is None:
            return
        deps = self.cluster.store.dependents(obj["metadata"]["uid"])
        for dsk, dns, dname in deps:
            dep = self._get(dsk, dns, dname)
            if dep is not None and not dep["metadata"].get("deletionTimestamp"):
                with contextlib.suppress(ApiError):
                    self.cluster.delete(self._type(dsk), dns, dname, propagation="Foreground")
        if deps:
            self._later(0.05, ("foreground", sk_text, loc))
            return
        new = copy_json(obj)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != "foregroundDeletion"
        ]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self.cluster.write(self._type(sk), obj, new)
