"""The cluster: every read and write the API offers, with the apiserver's rules, over the store.

HTTP handlers and the simulated controllers both go through this class, so each write gets the
same validation, defaulting, generation, managedFields and watch events.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from kubesim import crds
from kubesim.applying import Target, apply, record_update
from kubesim.cr_schemas import check_object, prune_object
from kubesim.defaulting import apply_defaults
from kubesim.errors import ApiError
from kubesim.objects import Obj, copy_json, drop_nulls, now_rfc3339
from kubesim.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_json_patch,
    apply_merge_patch,
    apply_strategic_merge_patch,
)
from kubesim.resources import ResourceRegistry, ResourceType
from kubesim.selectors import (
    FieldRequirement,
    Requirement,
    labels_match,
)
from kubesim.store import Store
from kubesim.validation import Cause, object_problems

NAMESPACES = ("", "namespaces")
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")


FIELD_VALIDATIONS = ("Strict", "Warn", "Ignore")


@dataclass(frozen=True, kw_only=True)
class WriteOptions:
    """Query parameters of a write: `fieldManager` (None for internal writes), dryRun, force.

    `field_validation` is the request's `fieldValidation` (None for internal writes, which skip
    custom resources' schemas); `warnings` collects the `Warning` headers of the answer.
    """

    manager: str | None = None
    dry_run: bool = False
    force: bool = False
    field_validation: str | None = None
    applying: bool = False
    warnings: list[str] = field(default_factory=list, compare=False)


INTERNAL = WriteOptions()


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(length))


def _body_only(obj: Obj) -> Obj:
    """Everything but metadata and status: what a change to bumps `generation`."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


class Cluster:
    def __init__(self, store: Store, registry: ResourceRegistry) -> None:
        self.store = store
        self.registry = registry
        self._used_ips: set[str] = set()
        self._used_node_ports: set[int] = set()
        self._next_ip = 10
        self._next_node_port = 30000
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

    # --- checks ---------------------------------------------------------------------------

    def _check_body(self, rt: ResourceType, body: Any, namespace: str) -> Obj:
        if not isinstance(body, dict):
            raise ApiError.bad_request("the body of the request must be a JSON object")
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rt.api_version:
            raise ApiError.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise ApiError.bad_request(
                f"the kind of the object ({kind}) does not match the resource ({rt.kind})"
            )
        md = body.get("metadata")
        if md is not None and not isinstance(md, dict):
            raise ApiError.bad_request("metadata must be an object")
        body_ns = (md or {}).get("namespace")
        if rt.namespaced and body_ns and body_ns != namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        return body

    @staticmethod
    def _default(rt: ResourceType, obj: Obj) -> None:
        try:
            apply_defaults(rt.storage_key, obj)
        except (AttributeError, TypeError, KeyError) as exc:
            raise ApiError.invalid(
                rt.group,
                rt.kind,
                obj["metadata"].get("name", ""),
                [("FieldValueInvalid", "", f"Invalid value: malformed object: {exc}")],
            ) from exc

    def _check_namespace(self, rt: ResourceType, namespace: str) -> None:
        if not rt.namespaced:
            return
        ns = self.store.get(NAMESPACES, "", namespace)
        if ns is None:
            raise ApiError.not_found("", "namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError.forbidden(
                rt.group,
                rt.plural,
                "",
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _validate(
        self,
        rt: ResourceType,
        obj: Obj,
        *,
        metadata_only: bool = False,
        extra: list[Cause] | None = None,
    ) -> None:
        causes = object_problems(rt, obj, metadata_only=metadata_only) + (extra or [])
        if causes:
            raise ApiError.invalid(rt.group, rt.kind, obj["metadata"].get("name", ""), causes)

    def _prune(self, rt: ResourceType, obj: Obj, opts: WriteOptions, part: str = "") -> None:
        """Prune a custom resource (or apply configuration) to its schema, defaults applied.

        Unknown fields fail the request under `fieldValidation=Strict` (worded as decoding or,
        for server-side apply, as building the typed patch fails), become `Warning` headers
        under `Warn` and are dropped silently under `Ignore`.
        """
        if rt.schema is None or opts.field_validation is None:
            return
        unknown = prune_object(rt.schema, obj, part=part, defaults=not opts.applying)
        if unknown and opts.applying:
            # As the apiserver: an applied configuration is typed against the schema whatever
            # the field validation, so an undeclared field fails building the typed patch.
            name = (obj.get("metadata") or {}).get("name", "")
            raise ApiError.internal_plain(
                f"failed to create typed patch object (/{name}; {rt.api_version}, "
                f"Kind={rt.kind}): "
                + ", ".join(f".{path}: field not declared in schema" for path in unknown)
            )
        unknown = sorted(unknown)  # the apiserver names them in order
        if not unknown or opts.field_validation == "Ignore":
            return
        if opts.field_validation == "Warn":
            opts.warnings.extend(f'unknown field "{path}"' for path in unknown)
            return
        message = (
            f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
            "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in unknown)
        )
        raise ApiError.bad_request(message)  # (no details, as the apiserver)

    @staticmethod
    def _schema_problems(
        rt: ResourceType, obj: Obj, opts: WriteOptions, subresource: str
    ) -> list[Cause]:
        """A custom resource's problems under its schema: `/status` writes check the status."""
        if rt.schema is None or opts.field_validation is None:
            return []
        if subresource == "status":
            return check_object(rt.schema, obj, part="status")
        return check_object(rt.schema, obj, skip="status" if rt.has_status else "")

    # --- create ---------------------------------------------------------------------------

    def create(
        self, rt: ResourceType, namespace: str, body: Any, opts: WriteOptions = INTERNAL
    ) -> Obj:
        body = self._check_body(rt, body, namespace)
        if (body.get("metadata") or {}).get("resourceVersion"):
            raise ApiError.internal_plain(
                "resourceVersion should not be set on objects to be created"
            )
        obj = drop_nulls(body)
        return self._create(rt, namespace, obj, opts, record=True)

    def _create(
        self, rt: ResourceType, namespace: str, obj: Obj, opts: WriteOptions, *, record: bool
    ) -> Obj:
        md = obj.setdefault("metadata", {})
        if not md.get("name") and md.get("generateName"):
            md["name"] = str(md["generateName"]) + random_suffix()
        name = md.get("name", "")
        if rt.namespaced:
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        self._check_namespace(rt, namespace)
        if name and self.store.get(rt.storage_key, md.get("namespace", ""), name) is not None:
            raise ApiError.already_exists(rt.group, rt.plural, name)
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ):
            md.pop(key, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now_rfc3339()
        if rt.tracks_generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        if rt.has_status and rt.storage_key != NAMESPACES:
            obj.pop("status", None)
        self._prune(rt, obj, opts)
        self._validate(rt, obj, metadata_only=True)
        self._default(rt, obj)
        with self._allocating(opts):
            self._allocate(rt, obj)
        self._system_status(rt, obj, None)
        self._validate(rt, obj, extra=self._schema_problems(rt, obj, opts, ""))
        if record and opts.manager:
            record_update(None, obj, manager=opts.manager, target=self._target(rt, obj, ""))
        if opts.dry_run:
            return obj
        md["resourceVersion"] = str(self.store.next_rv())
        self.store.put(rt.storage_key, obj, "ADDED")
        self._after_write(rt, obj)
        return obj

    def _target(self, rt: ResourceType, obj: Obj, subresource: str) -> Target:
        return Target(
            kind=None if rt.custom else rt.kind,
            api_version=rt.api_version,
            subresource=subresource,
            group=rt.group,
            plural=rt.plural,
            name=obj.get("metadata", {}).get("name", ""),
        )

    @contextlib.contextmanager
    def _allocating(self, opts: WriteOptions) -> Iterator[None]:
        """Around allocating cluster IPs and node ports: a dry run's are handed out but not
        reserved (the apiserver's allocators run in dry-run mode), so the next write can get
        the same ones."""
        if not opts.dry_run:
            yield
            return
        ips, next_ip = set(self._used_ips), self._next_ip
        ports, next_port = set(self._used_node_ports), self._next_node_port
        try:
            yield
        finally:
            self._used_ips, self._next_ip = ips, next_ip
            self._used_node_ports, self._next_node_port = ports, next_port

    def _allocate(self, rt: ResourceType, obj: Obj) -> None:
        """Service cluster IPs and node ports, as the apiserver's allocators hand them out."""
        if rt.storage_key != ("", "services"):
            return
        spec = obj["spec"]
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP"):
            spec["clusterIP"] = self._allocate_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = self._allocate_node_port()

    def _allocate_ip(self) -> str:
        if not self._used_ips:
            for svc in self.store.objects(("", "services")):
                self._used_ips.add(svc.get("spec", {}).get("clusterIP", ""))
        while True:
            ip = str(_SERVICE_CIDR[self._next_ip])
            self._next_ip += 1
            if ip not in self._used_ips:
                self._used_ips.add(ip)
                return ip

    def _allocate_node_port(self) -> int:
        if not self._used_node_ports:
            for svc in self.store.objects(("", "services")):
                for port in svc.get("spec", {}).get("ports") or []:
                    self._used_node_ports.add(int(port.get("nodePort") or 0))
        while self._next_node_port in self._used_node_ports:
            self._next_node_port += 1
        self._used_node_ports.add(self._next_node_port)
        return self._next_node_port

    def _system_status(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Status the apiserver itself writes: CRD conditions, pending pods, namespace phase."""
        if rt.storage_key == crds.CRD_KEY:
            obj["status"] = crds.status_for(obj, (old or {}).get("status"))
        elif rt.storage_key == NAMESPACES and old is None:
            obj["status"] = {"phase": "Active"}
        elif rt.storage_key == ("", "pods") and old is None:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}

    # --- update ---------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions = INTERNAL,
        subresource: str = "",
    ) -> Obj:
        body = self._check_body(rt, body, namespace)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise ApiError.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        old = self.get(rt, namespace, name)
        self._check_rv(rt, old, (body.get("metadata") or {}).get("resourceVersion"))
        new = self._merge_subresource(rt, old, drop_nulls(body), subresource)
        return self._finish_update(rt, old, new, opts, subresource, record=True)

    def _check_rv(self, rt: ResourceType, old: Obj, rv: Any) -> None:
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise ApiError.conflict(
                rt.group,
                rt.plural,
                old["metadata"]["name"],
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )

    @staticmethod
    def _merge_subresource(rt: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
        """Main-resource writes keep the old status; status writes change only status."""
        if subresource == "status":
            merged: Obj = copy_json(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if rt.has_status:
            if "status" in old:
                new["status"] = copy_json(old["status"])
            else:
                new.pop("status", None)
        return new

    def _finish_update(
        self,
        rt: ResourceType,
        old: Obj,
        new: Obj,
        opts: WriteOptions,
        subresource: str,
        *,
        record: bool,
    ) -> Obj:
        md = new.setdefault("metadata", {})
        old_md = old["metadata"]
        for key in (
            "name",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ):
            if key in old_md:
                md[key] = old_md[key]
            else:
                md.pop(key, None)
        if rt.namespaced:
            md["namespace"] = old_md.get("namespace", "")
        if "managedFields" not in md and "managedFields" in old_md:
            md["managedFields"] = old_md["managedFields"]
        md["resourceVersion"] = old_md["resourceVersion"]
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        self._prune(rt, new, opts, "status" if subresource == "status" else "")
        if subresource != "status":
            self._validate(rt, new, metadata_only=True)
        self._default(rt, new)
        if rt.tracks_generation:
            generation = int(old_md.get("generation") or 1)
            if _body_only(new) != _body_only(old) and subresource != "status":
                generation += 1
            md["generation"] = generation
        else:
            md.pop("generation", None)
        if rt.storage_key == ("", "services"):
            with self._allocating(opts):
                self._keep_allocations(old, new)
        self._system_status(rt, new, old)
        self._validate(rt, new, extra=self._schema_problems(rt, new, opts, subresource))
        if record and opts.manager:
            record_update(old, new, manager=opts.manager, target=self._target(rt, new, subresource))
        stored = self.store.get(rt.storage_key, old_md.get("namespace", ""), old_md["name"])
        if new == self.view(rt, stored or {}):
            return old  # nothing changed: no new resourceVersion, no event
        if opts.dry_run:
            return new
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            return self._remove(rt, new)
        md["resourceVersion"] = str(self.store.next_rv())
        self.store.put(rt.storage_key, new, "MODIFIED")
        self._after_write(rt, new)
        return new

    def _keep_allocations(self, old: Obj, new: Obj) -> None:
        old_spec, spec = old.get("spec") or {}, new.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        if not spec.get("clusterIP") and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            old_ports = {p.get("port"): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = old_ports.get(port.get("port")) or (
                        self._allocate_node_port()
                    )
        self._allocate(self.registry.lookup("", "v1", "services"), new)

    # --- patch ----------------------------------------------------------------------------

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        opts: WriteOptions = INTERNAL,
        subresource: str = "",
    ) -> Obj:
        if content_type == APPLY_PATCH:
            return self._apply(rt, namespace, name, raw, opts, subresource)
        if opts.force:
            raise ApiError.invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                [
                    (
                        "FieldValueForbidden",
                        "force",
                        "Forbidden: may not be specified for non-apply patch",
                    )
                ],
            )
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise ApiError.bad_request(f"error decoding patch: {exc}") from exc
        old = self.get(rt, namespace, name)
        if content_type == JSON_PATCH:
            patched = apply_json_patch(old, patch)
        elif content_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise ApiError.bad_request("merge patch must be a JSON object")
            patched = apply_merge_patch(old, patch)
        elif content_type == STRATEGIC_MERGE_PATCH:
            if rt.custom:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types "
                    "include: application/json-patch+json, application/merge-patch+json, "
                    "application/apply-patch+yaml",
                )
            patched = apply_strategic_merge_patch(old, patch, rt.kind)
        else:
            raise ApiError.unsupported_media_type(
                "application/json-patch+json, application/merge-patch+json, "
                "application/apply-patch+yaml, application/strategic-merge-patch+json"
            )
        if not isinstance(patched, dict):
            raise ApiError.bad_request("the patch did not produce an object")
        patched_md = patched.get("metadata") or {}
        if patched_md.get("name", name) != name:
            raise ApiError.bad_request("the name of the object cannot be changed by a patch")
        self._check_rv(rt, old, patched_md.get("resourceVersion"))
        new = self._merge_subresource(rt, old, drop_nulls(patched), subresource)
        return self._finish_update(rt, old, new, opts, subresource, record=True)

    def _apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        raw: bytes,
        opts: WriteOptions,
        subresource: str,
    ) -> Obj:
        if not opts.manager:
            raise ApiError.invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                [
                    (
                        "FieldValueRequired",
                        "fieldManager",
                        "Required value: is required for apply patch",
                    )
                ],
            )
        manager = opts.manager
        config = _parse_apply(raw)
        if config.get("apiVersion") != rt.api_version or config.get("kind") != rt.kind:
            if not config.get("apiVersion") or not config.get("kind"):
                group, _, version = str(config.get("apiVersion") or "").rpartition("/")
                raise ApiError.bad_request(
                    f"invalid object type: {group}/{version}, Kind={config.get('kind') or ''}"
                )
            self._check_body(rt, config, namespace)
        md = config.get("metadata") or {}
        if md.get("managedFields") is not None:
            # As the real server: an applied configuration never carries field ownership (an
            # object read back from the server must lose it before it is applied again).
            raise ApiError.bad_request("metadata.managedFields must be nil")
        if md.get("name", name) != name:
            raise ApiError.bad_request(
                f"the name of the object ({md.get('name')}) does not match the name on the URL "
                f"({name})"
            )
        if rt.namespaced and md.get("namespace") and md["namespace"] != namespace:
            raise ApiError.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        self._prune(
            rt, config, replace(opts, applying=True), "status" if subresource == "status" else ""
        )
        stored = self.store.get(rt.storage_key, namespace if rt.namespaced else "", name)
        target = Target(
            kind=None if rt.custom else rt.kind,
            api_version=rt.api_version,
            subresource=subresource,
            group=rt.group,
            plural=rt.plural,
            name=name,
        )
        if stored is None:
            if subresource:
                raise ApiError.not_found(rt.group, rt.plural, name)
            obj = apply(None, config, manager=manager, force=opts.force, target=target)
            obj["metadata"]["name"] = name
            return self._create(rt, namespace, obj, opts, record=False)
        old = self.view(rt, stored)
        self._check_rv(rt, old, md.get("resourceVersion"))
        new = apply(old, config, manager=manager, force=opts.force, target=target)
        if subresource != "status" and rt.has_status:
            new = self._merge_subresource(rt, old, new, "")
        return self._finish_update(rt, old, new, opts, subresource, record=False)

    # --- internal writes (controllers) ----------------------------------------------------

    def write_status(self, rt: ResourceType, obj: Obj, status: dict[str, Any]) -> Obj:
        """Replace an object's status as a controller would through `/status`."""
        if obj.get("status") == status:
            return obj
        new = copy_json(obj)
        new["status"] = status
        return self._finish_update(rt, obj, new, INTERNAL, "status", record=False)

    def write(self, rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """Replace a whole object as a controller would with PUT (status kept as given)."""
        return self._finish_update(rt, old, new, INTERNAL, "", record=False)

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
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != md.get("uid"):
            raise ApiError.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, "
                f"UID in object meta: {md.get('uid')}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != md["resourceVersion"]:
            raise ApiError.conflict(
                rt.group,
                rt.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                f"{md['resourceVersion']}",
            )
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
            new = copy_json(obj)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            return self._put_terminating(rt, new)
        if finalizers:
            new = copy_json(obj)
            new["metadata"]["finalizers"] = finalizers
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._put_terminating(rt, new)
        return self._remove(rt, obj)

    def _put_terminating(self, rt: ResourceType, new: Obj) -> Obj:
        new["metadata"]["resourceVersion"] = str(self.store.next_rv())
        self.store.put(rt.storage_key, new, "MODIFIED")
        self._after_write(rt, new)
        return new

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
        if rt.storage_key == ("", "services"):
            self._used_ips.discard(final.get("spec", {}).get("clusterIP", ""))
        if rt.storage_key == crds.CRD_KEY:
            self._unregister_crd(final)
        return final

    def remove_now(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete at once, finalizers and all (namespace and CRD cleanup, garbage collection)."""
        current = self.store.get(
            rt.storage_key, obj["metadata"].get("namespace", ""), obj["metadata"]["name"]
        )
        if current is None:
            return obj
        return self._remove(rt, current)

    # --- CRDs -----------------------------------------------------------------------------

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.storage_key == crds.CRD_KEY:
            self.register_crd(obj)

    def register_crd(self, crd: Obj) -> None:
        types = crds.served_types(crd)
        name = crd["metadata"]["name"]
        old_keys = {t.storage_key for t in self.registry.crd_types(name)}
        self.registry.set_crd_types(name, types)
        for key in old_keys - {t.storage_key for t in types}:
            self._drop_objects(key)

    def _unregister_crd(self, crd: Obj) -> None:
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


_JSON_NULL = re.compile(rb"[:\[,]\s*null\b")
"""Where a JSON text can hold a null value (after a colon, bracket or comma); "nullable" and
quoted text never match, so most bodies prove null-free with one scan."""


def _parse_apply(raw: bytes) -> Obj:
    """The apply configuration without null map values (as decoding into typed objects does)."""
    text = raw.decode("utf-8") if raw else ""
    try:
        config = json.loads(text)
        has_nulls = _JSON_NULL.search(raw) is not None
    except ValueError:
        try:
            config = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ApiError.bad_request(f"error decoding YAML: {exc}") from exc
        has_nulls = True
    if not isinstance(config, dict):
        raise ApiError.bad_request("apply configuration must be an object")
    return drop_nulls(config) if has_nulls else config
