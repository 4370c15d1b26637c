"""Validation the real apiserver does that clients notice: names, labels, a few spec rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubesim.objects import Obj
from kubesim.resources import ResourceType
from kubesim.selectors import labels_match, requirements_from_label_selector

Cause = tuple[str, str, str]  # (reason, field, message)

# All annotations of an object together (why client-side apply of a large CRD fails).
MAX_ANNOTATIONS = 256 * 1024

_WORKLOADS = {
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
}

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def name_problems(rt: ResourceType, name: str) -> list[Cause]:
    if not name:
        return [
            (
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    if rt.path_segment_names:
        if name in (".", "..") or "/" in name or "%" in name:
            return [
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f"Invalid value: \"{name}\": may not contain '/' or '%'",
                )
            ]
        return []
    if rt.label_names:
        if len(name) > 63 or not _LABEL.match(name):
            return [
                (
                    "FieldValueInvalid",
                    "metadata.name",
                    f'Invalid value: "{name}": {DNS1123_LABEL_MSG}',
                )
            ]
        return []
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        return [
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": {DNS1123_SUBDOMAIN_MSG}',
            )
        ]
    return []


def _key_problems(key: str, field: str) -> list[Cause]:
    """A label's or annotation's key: a qualified name with an optional DNS subdomain prefix."""
    prefix, _, name = key.rpartition("/")
    if prefix and not _SUBDOMAIN.match(prefix):
        return [
            (
                "FieldValueInvalid",
                field,
                f'Invalid value: "{key}": prefix part a lowercase RFC 1123 subdomain must '
                "consist of lower case alphanumeric characters, '-' or '.', and must start "
                "and end with an alphanumeric character",
            )
        ]
    if len(name) > 63 or not _QUALIFIED.match(name):
        return [
            (
                "FieldValueInvalid",
                field,
                f'Invalid value: "{key}": name part must '
                "consist of alphanumeric characters, '-', '_' or '.'",
            )
        ]
    return []


def _label_problems(labels: Any, field: str) -> list[Cause]:
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [("FieldValueInvalid", field, "Invalid value: must be a map of strings")]
    causes: list[Cause] = []
    for key, value in labels.items():
        causes += _key_problems(key, field)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "FieldValueInvalid",
                    field,
                    f'Invalid value: "{value}": a valid label '
                    "must be an empty string or consist of alphanumeric characters, '-', "
                    "'_' or '.'",
                )
            )
    return causes


def _template_problems(obj: Obj, *, selector_required: bool) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if selector_required and not selector:
        causes.append(("FieldValueRequired", "spec.selector", "Required value"))
    elif isinstance(selector, dict):
        reqs = requirements_from_label_selector(selector)
        if not reqs and selector_required:
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.selector",
                    "Invalid value: empty selector is invalid for deployment",
                )
            )
        elif not labels_match(reqs, template_labels):
            causes.append(
                (
                    "FieldValueInvalid",
                    "spec.template.metadata.labels",
                    f"Invalid value: {template_labels!r}: `selector` does not match "
                    "template `labels`",
                )
            )
    causes += _pod_spec_problems((spec.get("template") or {}).get("spec"), "spec.template.spec")
    return causes


def _pod_spec_problems(pod_spec: Any, field: str) -> list[Cause]:
    if not isinstance(pod_spec, dict) or not pod_spec.get("containers"):
        return [("FieldValueRequired", f"{field}.containers", "Required value")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, container in enumerate(pod_spec["containers"]):
        where = f"{field}.containers[{i}]"
        if not isinstance(container, dict):
            causes.append(("FieldValueInvalid", where, "Invalid value: must be an object"))
            continue
        name = container.get("name", "")
        if not name:
            causes.append(("FieldValueRequired", f"{where}.name", "Required value"))
        elif name in seen:
            causes.append(("FieldValueDuplicate", f"{where}.name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not container.get("image"):
            causes.append(("FieldValueRequired", f"{where}.image", "Required value"))
    return causes


def _forbidden_schema_keywords(schema: Any, path: str) -> list[Cause]:
    """What a CRD's structural schema may not say: uniqueItems: true (quadratic to check)."""
    if not isinstance(schema, dict):
        return []
    causes: list[Cause] = []
    if schema.get("uniqueItems") is True:
        causes.append(
            (
                "FieldValueForbidden",
                f"{path}.uniqueItems",
                "Forbidden: uniqueItems cannot be set to true since the runtime complexity "
                "becomes quadratic",
            )
        )
    for name, child in (schema.get("properties") or {}).items():
        causes += _forbidden_schema_keywords(child, f"{path}.properties[{name}]")
    for key in ("items", "additionalProperties", "not"):
        causes += _forbidden_schema_keywords(schema.get(key), f"{path}.{key}")
    for key in ("allOf", "anyOf", "oneOf"):
        for i, child in enumerate(schema.get(key) or []):
            causes += _forbidden_schema_keywords(child, f"{path}.{key}[{i}]")
    return causes


def _crd_problems(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    if not spec.get("group"):
        causes.append(("FieldValueRequired", "spec.group", "Required value"))
    if not names.get("plural"):
        causes.append(("FieldValueRequired", "spec.names.plural", "Required value"))
    if not names.get("kind"):
        causes.append(("FieldValueRequired", "spec.names.kind", "Required value"))
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if obj["metadata"]["name"] != expected:
        causes.append(
            (
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{obj["metadata"]["name"]}": must be spec.names.plural'
                '+"."+spec.group',
            )
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            (
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: '
                '"Cluster", "Namespaced"',
            )
        )
    versions = spec.get("versions") or []
    for i, version in enumerate(versions):
        schema = ((version or {}).get("schema") or {}) if isinstance(version, dict) else {}
        where = "spec.validation" if len(versions) == 1 else f"spec.versions[{i}].schema"
        causes += _forbidden_schema_keywords(
            schema.get("openAPIV3Schema"), f"{where}.openAPIV3Schema"
        )
    if not versions:
        causes.append(("FieldValueRequired", "spec.versions", "Required value"))
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(
            (
                "FieldValueInvalid",
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    return causes


def _service_problems(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if spec.get("type") not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            ("FieldValueNotSupported", "spec.type", f'Unsupported value: "{spec.get("type")}"')
        )
    if (
        spec.get("type") != "ExternalName"
        and spec.get("clusterIP") != "None"
        and not spec.get("ports")
    ):
        causes.append(("FieldValueRequired", "spec.ports", "Required value"))
    for i, port in enumerate(spec.get("ports") or []):
        if not isinstance(port, dict) or not isinstance(port.get("port"), int):
            causes.append(("FieldValueRequired", f"spec.ports[{i}].port", "Required value"))
        elif len(spec["ports"]) > 1 and not port.get("name"):
            causes.append(("FieldValueRequired", f"spec.ports[{i}].name", "Required value"))
    return causes


def _annotation_problems(annotations: Any) -> list[Cause]:
    if annotations is None:
        return []
    if not isinstance(annotations, dict) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        return [
            (
                "FieldValueInvalid",
                "metadata.annotations",
                "Invalid value: annotations must be a map of strings",
            )
        ]
    causes: list[Cause] = []
    for key in annotations:
        causes += _key_problems(key, "metadata.annotations")
    if sum(len(k) + len(v) for k, v in annotations.items()) > MAX_ANNOTATIONS:
        causes.append(
            (
                "FieldValueTooLong",
                "metadata.annotations",
                f"Too long: may not be more than {MAX_ANNOTATIONS} bytes",
            )
        )
    return causes


def _configmap_problems(obj: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for section in ("data", "binaryData"):
        data = obj.get(section)
        if data is not None and not isinstance(data, dict):
            causes.append(("FieldValueInvalid", section, "Invalid value: must be a map"))
    return causes


def _workload_problems(obj: Obj) -> list[Cause]:
    return _template_problems(obj, selector_required=True)


def _pod_problems(obj: Obj) -> list[Cause]:
    return _pod_spec_problems(obj.get("spec"), "spec")


_BODY_CHECKS: dict[tuple[str, str], Callable[[Obj], list[Cause]]] = {
    **dict.fromkeys(_WORKLOADS, _workload_problems),
    ("", "pods"): _pod_problems,
    ("", "services"): _service_problems,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _crd_problems,
    ("", "configmaps"): _configmap_problems,
}
"""The built-in kinds whose bodies the apiserver checks beyond metadata, by storage key."""


def object_problems(rt: ResourceType, obj: Obj, *, metadata_only: bool = False) -> list[Cause]:
    """Every problem the apiserver would report as 422 Invalid for `obj` of type `rt`."""
    md = obj.get("metadata") or {}
    causes = name_problems(rt, md.get("name", ""))
    causes += _label_problems(md.get("labels"), "metadata.labels")
    causes += _annotation_problems(md.get("annotations"))
    if rt.custom or metadata_only:
        return causes
    check = _BODY_CHECKS.get(rt.storage_key)
    return causes + check(obj) if check is not None else causes
