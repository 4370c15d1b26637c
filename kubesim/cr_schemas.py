"""Custom resources against their CRD version's structural schema: pruning, defaults, validation.

A `CrSchema` wraps one served version's `openAPIV3Schema` and compiles it into a tree of
`_Node`s the first time a custom resource of that version is written; the CRD's types (and so
their schemas) are rebuilt only when the CRD itself changes. `check` then walks the object once
to prune unknown fields and apply defaults, and once more to collect the problems the apiserver
would answer 422 Invalid with.

Not evaluated: `x-kubernetes-validations` (CEL), `x-kubernetes-list-type`/`-map-keys`
uniqueness, and formats other than those in `_FORMATS`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubesim.objects import Obj, copy_json

Cause = tuple[str, str, str]  # (reason, field, message), as kubesim.validation.Cause

_TYPE_META = frozenset({"apiVersion", "kind", "metadata"})
_NO_DEFAULT = object()


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value) and value.is_integer()


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if _is_integer(value):
        return "integer"
    return "number"


def _shown(value: Any) -> str:
    """A value as the apiserver quotes it after `Invalid value:`."""
    if isinstance(value, dict | list) or value is None:
        return f'"{_type_name(value)}"'
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


# Formats checked (for strings); every other format is accepted as the apiserver's unknown ones.
_FORMATS: dict[str, Callable[[str], bool]] = {
    "byte": _is_base64,
    "date-time": lambda s: bool(_DATE_TIME.match(s)),
    "datetime": lambda s: bool(_DATE_TIME.match(s)),
    "date": lambda s: bool(_DATE.match(s)),
    "uuid": lambda s: bool(_UUID.match(s)),
    "ipv4": lambda s: _is_ip(s, 4),
    "ipv6": lambda s: _is_ip(s, 6),
    "cidr": _is_cidr,
}


@dataclass(eq=False)
class _Node:
    """One compiled schema node: what pruning, defaulting and validation read from it."""

    type: str | None = None
    nullable: bool = False
    properties: dict[str, _Node] | None = None
    additional: _Node | bool | None = None
    items: _Node | None = None
    required: tuple[str, ...] = ()
    enum: list[Any] | None = None
    enum_keys: frozenset[str] = frozenset()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    pattern: re.Pattern[str] | None = None
    pattern_text: str = ""
    min_items: int | None = None
    max_items: int | None = None
    unique_items: bool = False
    min_properties: int | None = None
    max_properties: int | None = None
    format: Callable[[str], bool] | None = None
    format_name: str = ""
    int_or_string: bool = False
    preserve_unknown: bool = False
    embedded: bool = False
    all_of: tuple[_Node, ...] = ()
    any_of: tuple[_Node, ...] = ()
    one_of: tuple[_Node, ...] = ()
    not_: _Node | None = None
    defaults: tuple[tuple[str, Any], ...] = ()
    # Whether anything below (or here) can prune or default: objects without it are skipped.
    shapes: bool = False
    validates: bool = field(default=True)


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def compile_schema(schema: Any) -> _Node:
    """Compile one OpenAPI v3 schema object (a CRD version's structural schema)."""
    if not isinstance(schema, dict):
        return _Node(preserve_unknown=True, validates=False)
    node = _Node()
    kind = schema.get("type")
    node.type = kind if isinstance(kind, str) and kind in _TYPE_CHECKS else None
    node.nullable = schema.get("nullable") is True
    node.int_or_string = schema.get("x-kubernetes-int-or-string") is True
    node.preserve_unknown = schema.get("x-kubernetes-preserve-unknown-fields") is True
    node.embedded = schema.get("x-kubernetes-embedded-resource") is True
    _compile_children(node, schema)
    required = schema.get("required")
    if isinstance(required, list):
        node.required = tuple(r for r in required if isinstance(r, str))
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        node.enum = enum
        node.enum_keys = frozenset(_canonical(v) for v in enum)
    _compile_limits(node, schema)
    _compile_string_rules(node, schema)
    for key, attr in (("allOf", "all_of"), ("anyOf", "any_of"), ("oneOf", "one_of")):
        branches = schema.get(key)
        if isinstance(branches, list):
            setattr(node, attr, tuple(compile_schema(b) for b in branches))
    if isinstance(schema.get("not"), dict):
        node.not_ = compile_schema(schema["not"])
    node.shapes = _shapes(node)
    return node


def _compile_children(node: _Node, schema: dict[str, Any]) -> None:
    """`properties` (with their defaults), `additionalProperties` and `items`."""
    props = schema.get("properties")
    if isinstance(props, dict):
        node.properties = {k: compile_schema(v) for k, v in props.items()}
        node.defaults = tuple(
            (k, v["default"]) for k, v in props.items() if isinstance(v, dict) and "default" in v
        )
    additional = schema.get("additionalProperties")
    if isinstance(additional, bool):
        node.additional = additional or None
    elif isinstance(additional, dict):
        node.additional = compile_schema(additional)
    items = schema.get("items")
    if isinstance(items, dict):
        node.items = compile_schema(items)


def _compile_limits(node: _Node, schema: dict[str, Any]) -> None:
    """The numeric bounds and the length and count limits."""
    node.minimum = _number(schema.get("minimum"))
    node.maximum = _number(schema.get("maximum"))
    node.exclusive_minimum = schema.get("exclusiveMinimum") is True
    node.exclusive_maximum = schema.get("exclusiveMaximum") is True
    node.min_length = _count(schema.get("minLength"))
    node.max_length = _count(schema.get("maxLength"))
    node.min_items = _count(schema.get("minItems"))
    node.max_items = _count(schema.get("maxItems"))
    # a set's items are unique (CRDs may not say uniqueItems: the apiserver refuses it)
    node.unique_items = schema.get("x-kubernetes-list-type") == "set"
    node.min_properties = _count(schema.get("minProperties"))
    node.max_properties = _count(schema.get("maxProperties"))


def _compile_string_rules(node: _Node, schema: dict[str, Any]) -> None:
    """`pattern` (when Python can read it) and the checked `format`s."""
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            node.pattern = re.compile(pattern)
            node.pattern_text = pattern
        except re.error:
            node.pattern = None  # an ECMA pattern Python cannot read: not checked
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        node.format, node.format_name = _FORMATS[fmt], fmt


def _shapes(node: _Node) -> bool:
    """Whether pruning or defaulting can change anything at or below `node`."""
    children = [
        *(node.properties or {}).values(),
        *([node.additional] if isinstance(node.additional, _Node) else []),
        *([node.items] if node.items else []),
    ]
    return (
        bool(node.defaults)
        or (
            (node.properties is not None or node.type == "object")
            and not node.preserve_unknown
            and node.additional is None
        )
        or any(c.shapes for c in children)
    )


class CrSchema:
    """The schema of one served CRD version, compiled on first use."""

    def __init__(self, schema: Any) -> None:
        self._schema = schema
        self._root: _Node | None = None
        self._body_roots: dict[str, _Node] = {}

    @property
    def root(self) -> _Node:
        if self._root is None:
            self._root = compile_schema(self._schema)
        return self._root

    def body_root(self, skip: str) -> _Node:
        """The root without apiVersion, kind, metadata (and `skip`) among its required fields."""
        node = self._body_roots.get(skip)
        if node is None:
            root = self.root
            required = tuple(n for n in root.required if n not in _TYPE_META and n != skip)
            node = self._body_roots[skip] = _Node(**{**root.__dict__, "required": required})
        return node

    def node_at(self, name: str) -> _Node | None:
        """The compiled schema of one top-level field (for example `status`)."""
        props = self.root.properties
        return props.get(name) if props else None


# --- pruning and defaults ---------------------------------------------------------------------


def prune(
    node: _Node,
    value: Any,
    path: str,
    unknown: list[str],
    *,
    root: bool = False,
    defaults: bool = True,
) -> None:
    """Drop fields the schema does not declare (their paths go to `unknown`), apply defaults."""
    if isinstance(value, dict):
        if node.shapes:
            _prune_map(node, value, path, unknown, meta=root or node.embedded, defaults=defaults)
    elif isinstance(value, list) and node.items is not None and node.items.shapes:
        for i, item in enumerate(value):
            prune(node.items, item, f"{path}[{i}]", unknown, defaults=defaults)


def _prune_map(
    node: _Node,
    value: dict[str, Any],
    path: str,
    unknown: list[str],
    *,
    meta: bool,
    defaults: bool,
) -> None:
    """`prune` of an object; `meta`: apiVersion, kind and metadata are the object's own."""
    props = node.properties
    if props is not None or node.type == "object":
        keep_all = node.preserve_unknown or node.additional is not None
        if not keep_all:
            _drop_undeclared(value, props or {}, path, unknown, meta=meta)
    for key, default in node.defaults if defaults else ():
        if key not in value:
            value[key] = copy_json(default)
    for key, child in (props or {}).items():
        if key in value and child.shapes and not (meta and key in _TYPE_META):
            prune(child, value[key], _joined(path, key), unknown, defaults=defaults)
    if isinstance(node.additional, _Node) and node.additional.shapes:
        for key, item in value.items():
            if props is None or key not in props:
                prune(node.additional, item, _joined(path, key), unknown, defaults=defaults)


def _drop_undeclared(
    value: dict[str, Any], allowed: dict[str, _Node], path: str, unknown: list[str], *, meta: bool
) -> None:
    for key in [k for k in value if k not in allowed]:
        if meta and key in _TYPE_META:
            continue
        del value[key]
        unknown.append(_joined(path, key))


def _joined(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- validation -------------------------------------------------------------------------------


def _where(path: str) -> str:
    return path or "<root>"


def validate(node: _Node, value: Any, path: str, causes: list[Cause]) -> None:
    """Append every problem of `value` at `path` against `node` to `causes`."""
    if not node.validates:
        return
    if not _type_checked(node, value, path, causes):
        return
    if node.enum is not None and _canonical(value) not in node.enum_keys:
        supported = ", ".join(json.dumps(v) for v in node.enum)
        causes.append(
            (
                "FieldValueNotSupported",
                path,
                f"Unsupported value: {json.dumps(value)}: supported values: {supported}",
            )
        )
    if isinstance(value, str):
        _check_string(node, value, path, causes)
    elif isinstance(value, dict):
        _check_object(node, value, path, causes)
    elif isinstance(value, list):
        _check_array(node, value, path, causes)
    elif not isinstance(value, bool):
        _check_number(node, value, path, causes)
    if node.all_of or node.any_of or node.one_of or node.not_ is not None:
        _check_combinators(node, value, path, causes)


def _type_checked(node: _Node, value: Any, path: str, causes: list[Cause]) -> bool:
    """Whether `value` has the node's type (null, int-or-string); if not, why goes to `causes`."""
    if value is None:
        if not node.nullable:
            causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f'Invalid value: "null": {_where(path)} in body must be of type '
                    f'{node.type or "object"}: "null"',
                )
            )
        return False
    if node.int_or_string:
        if not (_is_integer(value) or isinstance(value, str)):
            causes.append(
                (
                    "FieldValueTypeInvalid",
                    path,
                    f"Invalid value: {_shown(value)}: {_where(path)} in body must be of type "
                    f'integer or string: "{_type_name(value)}"',
                )
            )
            return False
    elif node.type is not None and not _TYPE_CHECKS[node.type](value):
        causes.append(
            (
                "FieldValueTypeInvalid",
                path,
                f'Invalid value: "{_type_name(value)}": {_where(path)} in body must be of type '
                f'{node.type}: "{_type_name(value)}"',
            )
        )
        return False
    return True


def _check_string(node: _Node, value: str, path: str, causes: list[Cause]) -> None:
    if node.max_length is not None and len(value) > node.max_length:
        causes.append(
            ("FieldValueTooLong", path, f"Too long: may not be more than {node.max_length} bytes")
        )
    if node.min_length is not None and len(value) < node.min_length:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {_where(path)} in body should be at least "
                f"{node.min_length} chars long",
            )
        )
    if node.pattern is not None and not node.pattern.search(value):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {_where(path)} in body should match "
                f"'{node.pattern_text}'",
            )
        )
    if node.format is not None and not node.format(value):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {_where(path)} in body must be of type "
                f"{node.format_name}: {_shown(value)}",
            )
        )


def _check_number(node: _Node, value: float, path: str, causes: list[Cause]) -> None:
    if node.minimum is not None and (
        value < node.minimum or (node.exclusive_minimum and value == node.minimum)
    ):
        relation = "greater than" if node.exclusive_minimum else "greater than or equal to"
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {_where(path)} in body should be {relation} "
                f"{_shown(_plain(node.minimum))}",
            )
        )
    if node.maximum is not None and (
        value > node.maximum or (node.exclusive_maximum and value == node.maximum)
    ):
        relation = "less than" if node.exclusive_maximum else "less than or equal to"
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {_where(path)} in body should be {relation} "
                f"{_shown(_plain(node.maximum))}",
            )
        )


def _plain(number: float) -> float | int:
    return int(number) if number.is_integer() else number


def _check_array(node: _Node, value: list[Any], path: str, causes: list[Cause]) -> None:
    if node.max_items is not None and len(value) > node.max_items:
        causes.append(
            (
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {node.max_items} items",
            )
        )
    if node.min_items is not None and len(value) < node.min_items:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {_where(path)} in body should have at least "
                f"{node.min_items} items",
            )
        )
    if node.unique_items:
        seen: set[str] = set()
        for i, item in enumerate(value):
            key = _canonical(item)
            if key in seen:
                causes.append(("FieldValueDuplicate", f"{path}[{i}]", f"Duplicate value: {key}"))
            seen.add(key)
    items = node.items
    if items is not None and items.validates:
        for i, item in enumerate(value):
            validate(items, item, f"{path}[{i}]", causes)


def _check_object(node: _Node, value: Obj, path: str, causes: list[Cause]) -> None:
    prefix = f"{path}." if path else ""
    for name in node.required:
        if name not in value:
            causes.append(("FieldValueRequired", prefix + name, "Required value"))
    if node.embedded:
        for name in ("apiVersion", "kind"):
            if not value.get(name):
                causes.append(
                    ("FieldValueRequired", prefix + name, "Required value: must not be empty")
                )
    if node.max_properties is not None and len(value) > node.max_properties:
        causes.append(
            (
                "FieldValueTooMany",
                path,
                f"Too many: {len(value)}: must have at most {node.max_properties} items",
            )
        )
    if node.min_properties is not None and len(value) < node.min_properties:
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {len(value)}: {_where(path)} in body should have at least "
                f"{node.min_properties} properties",
            )
        )
    props = node.properties or {}
    additional = node.additional if isinstance(node.additional, _Node) else None
    for key, item in value.items():
        child = props.get(key)
        if child is not None:
            validate(child, item, prefix + key, causes)
        elif additional is not None:
            validate(additional, item, prefix + key, causes)


def _passes(node: _Node, value: Any, path: str) -> bool:
    found: list[Cause] = []
    validate(node, value, path, found)
    return not found


def _check_combinators(node: _Node, value: Any, path: str, causes: list[Cause]) -> None:
    where = _where(path)
    for branch in node.all_of:
        validate(branch, value, path, causes)
    if node.any_of and not any(_passes(b, value, path) for b in node.any_of):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {where} in body must validate at least one "
                "schema (anyOf)",
            )
        )
    if node.one_of:
        valid = sum(1 for b in node.one_of if _passes(b, value, path))
        if valid != 1:
            found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            # worded, and (not) placed, as the apiserver reports it: the field is "<nil>"
            causes.append(
                (
                    "FieldValueInvalid",
                    "<nil>",
                    f'Invalid value: "": "{where}" must validate one and only one schema '
                    f"(oneOf). {found}",
                )
            )
    if node.not_ is not None and _passes(node.not_, value, path):
        causes.append(
            (
                "FieldValueInvalid",
                path,
                f"Invalid value: {_shown(value)}: {where} in body must not validate the schema "
                "(not)",
            )
        )


# --- one write --------------------------------------------------------------------------------


def prune_object(schema: CrSchema, obj: Obj, *, part: str = "", defaults: bool = True) -> list[str]:
    """Prune (and default) `obj` in place, only its `part` (such as `status`) when given.

    Apply configurations are pruned without defaults: their fields become the manager's.
    """
    unknown: list[str] = []
    if part:
        node = schema.node_at(part)
        if node is not None and part in obj:
            prune(node, obj[part], part, unknown, defaults=defaults)
    else:
        prune(schema.root, obj, "", unknown, root=True, defaults=defaults)
    return unknown


def check_object(schema: CrSchema, obj: Obj, *, part: str = "", skip: str = "") -> list[Cause]:
    """The schema problems of `obj` (of one top-level `part` only, or all but `skip`).

    apiVersion, kind and metadata are the apiserver's own business and are never checked here.
    """
    causes: list[Cause] = []
    if part:
        node = schema.node_at(part)
        if node is not None and part in obj:
            validate(node, obj[part], part, causes)
        return causes
    body = {k: v for k, v in obj.items() if k not in _TYPE_META and k != skip}
    validate(schema.body_root(skip), body, "", causes)
    return causes
