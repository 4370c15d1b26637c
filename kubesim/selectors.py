"""Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!key`) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubesim.errors import ApiError

_SET_RE = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


@dataclass(frozen=True, kw_only=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and labels[self.key] == self.values[0]
        if self.op == "!=":
            return not present or labels[self.key] != self.values[0]
        if self.op == "in":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # notin


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]


def parse_label_selector(text: str) -> list[Requirement]:
    reqs: list[Requirement] = []
    for part in _split_top(text):
        for op in ("!=", "==", "="):
            if op in part and "(" not in part:
                key, _, value = part.partition(op)
                reqs.append(
                    Requirement(
                        key=key.strip(), op="!=" if op == "!=" else "=", values=(value.strip(),)
                    )
                )
                break
        else:
            m = _SET_RE.match(part)
            if not m:
                raise ApiError.bad_request(f"unable to parse requirement: {part!r}")
            neg, key, set_op, values = m.groups()
            if set_op:
                if neg:
                    raise ApiError.bad_request(f"unable to parse requirement: {part!r}")
                vals = tuple(v.strip() for v in values.split(",") if v.strip())
                reqs.append(Requirement(key=key, op=set_op, values=vals))
            else:
                reqs.append(Requirement(key=key, op="!" if neg else "exists"))
    return reqs


def requirements_from_label_selector(selector: dict[str, Any]) -> list[Requirement]:
    """A `LabelSelector` object (`matchLabels` + `matchExpressions`) as requirements."""
    reqs = [
        Requirement(key=k, op="=", values=(str(v),))
        for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(
            expr.get("operator", ""), "exists"
        )
        reqs.append(Requirement(key=expr["key"], op=op, values=tuple(expr.get("values") or ())))
    return reqs


def labels_match(reqs: list[Requirement], labels: dict[str, str]) -> bool:
    return all(r.matches(labels) for r in reqs)


FieldGetter = Callable[[dict[str, Any]], str | None]

_FIELD_GETTERS: dict[str, FieldGetter] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name"),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "status.phase": lambda o: o.get("status", {}).get("phase"),
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
    "type": lambda o: o.get("type"),
    "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name"),
    "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind"),
    "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace"),
    "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid"),
}


@dataclass(frozen=True, kw_only=True)
class FieldRequirement:
    getter: FieldGetter
    equal: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        actual = self.getter(obj)
        return (actual == self.value) if self.equal else (actual != self.value)


def parse_field_selector(text: str) -> list[FieldRequirement]:
    reqs: list[FieldRequirement] = []
    for part in _split_top(text):
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                key = key.strip()
                getter = _FIELD_GETTERS.get(key)
                if getter is None:
                    raise ApiError.bad_request(
                        f'"{key}" is not a known field selector: only "metadata.name", '
                        '"metadata.namespace"'
                    )
                reqs.append(FieldRequirement(getter=getter, equal=op != "!=", value=value.strip()))
                break
        else:
            raise ApiError.bad_request(f"invalid field selector: {part!r}")
    return reqs
