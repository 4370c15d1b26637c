"""What the apiserver does to an object before storing it: body checks, schema pruning,
defaults, validation, and the status the apiserver writes itself."""

from __future__ import annotations

import uuid
from typing import Any

from kubesim import crds
from kubesim.cr_schemas import check_object, prune_object
from kubesim.defaulting import apply_defaults
from kubesim.errors import ApiError
from kubesim.objects import Obj, copy_json, now_rfc3339, random_suffix
from kubesim.resources import ResourceType
from kubesim.store import Store
from kubesim.validation import Cause, object_problems
from kubesim.write_options import WriteOptions

NAMESPACES = ("", "namespaces")


def check_body(rt: ResourceType, body: Any, namespace: str) -> Obj:
    """The request body as an object of `rt` in `namespace` (400 when it says otherwise)."""
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
    check_namespace_matches(rt, (md or {}).get("namespace"), namespace)
    return body


def check_namespace_matches(rt: ResourceType, body_ns: Any, namespace: str) -> None:
    if rt.namespaced and body_ns and body_ns != namespace:
        raise ApiError.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )


def default(rt: ResourceType, obj: Obj) -> None:
    """The built-in defaults (a malformed object the defaulting cannot read is 422)."""
    try:
        apply_defaults(rt.storage_key, obj)
    except (AttributeError, TypeError, KeyError) as exc:
        raise ApiError.invalid(
            rt.group,
            rt.kind,
            obj["metadata"].get("name", ""),
            [("FieldValueInvalid", "", f"Invalid value: malformed object: {exc}")],
        ) from exc


def check_namespace(store: Store, rt: ResourceType, namespace: str) -> None:
    """A namespaced object's namespace exists and is not terminating."""
    if not rt.namespaced:
        return
    ns = store.get(NAMESPACES, "", namespace)
    if ns is None:
        raise ApiError.not_found("", "namespaces", namespace)
    if ns["metadata"].get("deletionTimestamp"):
        raise ApiError.forbidden(
            rt.group,
            rt.plural,
            "",
            f"unable to create new content in namespace {namespace} because it is being terminated",
        )


def validate(
    rt: ResourceType,
    obj: Obj,
    *,
    metadata_only: bool = False,
    extra: list[Cause] | None = None,
) -> None:
    causes = object_problems(rt, obj, metadata_only=metadata_only) + (extra or [])
    if causes:
        raise ApiError.invalid(rt.group, rt.kind, obj["metadata"].get("name", ""), causes)


def prune(rt: ResourceType, obj: Obj, opts: WriteOptions, part: str = "") -> None:
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


def schema_problems(
    rt: ResourceType, obj: Obj, opts: WriteOptions, subresource: str
) -> list[Cause]:
    """A custom resource's problems under its schema: `/status` writes check the status."""
    if rt.schema is None or opts.field_validation is None:
        return []
    if subresource == "status":
        return check_object(rt.schema, obj, part="status")
    return check_object(rt.schema, obj, skip="status" if rt.has_status else "")


def system_status(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Status the apiserver itself writes: CRD conditions, pending pods, namespace phase."""
    if rt.storage_key == crds.CRD_KEY:
        obj["status"] = crds.status_for(obj, (old or {}).get("status"))
    elif rt.storage_key == NAMESPACES and old is None:
        obj["status"] = {"phase": "Active"}
    elif rt.storage_key == ("", "pods") and old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def merge_subresource(rt: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
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


def check_rv(rt: ResourceType, old: Obj, rv: Any) -> None:
    """A write naming a resourceVersion conflicts unless it is the stored one."""
    if rv and str(rv) != old["metadata"]["resourceVersion"]:
        raise ApiError.conflict(
            rt.group,
            rt.plural,
            old["metadata"]["name"],
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )


_KEPT_ON_UPDATE = (
    "name",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
"""Metadata an update may not change."""


def _body_only(obj: Obj) -> Obj:
    """Everything but metadata and status: what a change to bumps `generation`."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


def kept_metadata(rt: ResourceType, old: Obj, new: Obj) -> dict[str, Any]:
    """The new object's metadata with what an update cannot change taken from the old."""
    md: dict[str, Any] = new.setdefault("metadata", {})
    old_md = old["metadata"]
    for key in _KEPT_ON_UPDATE:
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
    return md


def next_generation(rt: ResourceType, old: Obj, new: Obj, subresource: str) -> None:
    """`generation` goes up when anything but metadata and status changed."""
    md = new["metadata"]
    if not rt.tracks_generation:
        md.pop("generation", None)
        return
    generation = int(old["metadata"].get("generation") or 1)
    if _body_only(new) != _body_only(old) and subresource != "status":
        generation += 1
    md["generation"] = generation


def check_preconditions(rt: ResourceType, md: dict[str, Any], pre: dict[str, Any]) -> None:
    """A delete's preconditions (uid, resourceVersion) hold for the object, or 409."""
    name = md.get("name", "")
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


_SERVER_SET = ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink")
"""Metadata a create may not set: the server's own."""


def new_metadata(store: Store, rt: ResourceType, namespace: str, obj: Obj) -> dict[str, Any]:
    """A new object's metadata: its name (generated), namespace, uid, creation time and
    generation; 404 without its namespace, 409 when the name is taken."""
    md: dict[str, Any] = obj.setdefault("metadata", {})
    if not md.get("name") and md.get("generateName"):
        md["name"] = str(md["generateName"]) + random_suffix()
    name = md.get("name", "")
    if rt.namespaced:
        md["namespace"] = namespace
    else:
        md.pop("namespace", None)
    check_namespace(store, rt, namespace)
    if name and store.get(rt.storage_key, md.get("namespace", ""), name) is not None:
        raise ApiError.already_exists(rt.group, rt.plural, name)
    obj["apiVersion"] = rt.api_version
    obj["kind"] = rt.kind
    for key in _SERVER_SET:
        md.pop(key, None)
    md["uid"] = str(uuid.uuid4())
    md["creationTimestamp"] = now_rfc3339()
    if rt.tracks_generation:
        md["generation"] = 1
    else:
        md.pop("generation", None)
    return md
