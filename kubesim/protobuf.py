"""Decoding Kubernetes protobuf request bodies for the few kinds typed Go clients send that way.

client-go's typed clients (kubectl's `create` generators, Helm's release storage) encode
bodies as `application/vnd.kubernetes.protobuf`: the magic `k8s\\0` and a `runtime.Unknown`
envelope around the object. Answers stay JSON, which those clients also accept. Kinds not in
`SCHEMAS` are refused with 415 Unsupported Media Type.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Callable, Iterator
from typing import Any

from kubesim.errors import ApiError

PROTOBUF = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

# message name -> field number -> (json name, type). Types: string, bytes, int, bool, time,
# msg:<name>, map:string, map:bytes, list:string, list:msg:<name>.
Schema = dict[int, tuple[str, str]]
SCHEMAS: dict[str, Schema] = {
    "Unknown": {
        1: ("typeMeta", "msg:TypeMeta"),
        2: ("raw", "bytes"),
        3: ("contentEncoding", "string"),
        4: ("contentType", "string"),
    },
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        9: ("deletionTimestamp", "time"),
        10: ("deletionGracePeriodSeconds", "int"),
        11: ("labels", "map:string"),
        12: ("annotations", "map:string"),
        13: ("ownerReferences", "list:msg:OwnerReference"),
        14: ("finalizers", "list:string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("resourceVersion", "string"),
        7: ("fieldPath", "string"),
    },
    "LocalObjectReference": {1: ("name", "string")},
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:bytes"),
        3: ("type", "string"),
        4: ("stringData", "map:string"),
        5: ("immutable", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:string"),
        3: ("binaryData", "map:bytes"),
        4: ("immutable", "bool"),
    },
    "Namespace": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:NamespaceSpec"),
        3: ("status", "msg:NamespaceStatus"),
    },
    "NamespaceSpec": {1: ("finalizers", "list:string")},
    "NamespaceStatus": {1: ("phase", "string")},
    "ServiceAccount": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("secrets", "list:msg:ObjectReference"),
        3: ("imagePullSecrets", "list:msg:LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "Lease": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:LeaseSpec")},
    "LeaseSpec": {
        1: ("holderIdentity", "string"),
        2: ("leaseDurationSeconds", "int"),
        3: ("acquireTime", "microtime"),
        4: ("renewTime", "microtime"),
        5: ("leaseTransitions", "int"),
    },
    "DeleteOptions": {
        1: ("gracePeriodSeconds", "int"),
        2: ("preconditions", "msg:Preconditions"),
        3: ("orphanDependents", "bool"),
        4: ("propagationPolicy", "string"),
        5: ("dryRun", "list:string"),
    },
    "Preconditions": {1: ("uid", "string"), 2: ("resourceVersion", "string")},
    # authentication.k8s.io/v1 and authorization.k8s.io/v1 (`kubectl create token`,
    # `kubectl auth can-i`, `kubectl auth whoami`)
    "TokenRequest": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:TokenRequestSpec")},
    "TokenRequestSpec": {
        1: ("audiences", "list:string"),
        3: ("boundObjectRef", "msg:BoundObjectReference"),
        4: ("expirationSeconds", "int"),
    },
    "BoundObjectReference": {
        1: ("kind", "string"),
        2: ("apiVersion", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
    },
    "TokenReview": {1: ("metadata", "msg:ObjectMeta"), 2: ("spec", "msg:TokenReviewSpec")},
    "TokenReviewSpec": {1: ("token", "string"), 2: ("audiences", "list:string")},
    "SelfSubjectReview": {1: ("metadata", "msg:ObjectMeta")},
    "SelfSubjectAccessReview": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:SubjectAccessReviewSpec"),
    },
    "SubjectAccessReview": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:SubjectAccessReviewSpec"),
    },
    "LocalSubjectAccessReview": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("spec", "msg:SubjectAccessReviewSpec"),
    },
    # a SelfSubjectAccessReviewSpec is the first two fields of this one
    "SubjectAccessReviewSpec": {
        1: ("resourceAttributes", "msg:ResourceAttributes"),
        2: ("nonResourceAttributes", "msg:NonResourceAttributes"),
        3: ("user", "string"),
        4: ("groups", "list:string"),
        6: ("uid", "string"),
    },
    "ResourceAttributes": {
        1: ("namespace", "string"),
        2: ("verb", "string"),
        3: ("group", "string"),
        4: ("version", "string"),
        5: ("resource", "string"),
        6: ("subresource", "string"),
        7: ("name", "string"),
    },
    "NonResourceAttributes": {1: ("path", "string"), 2: ("verb", "string")},
}


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            length, i = _varint(buf, i)
            value, i = buf[i : i + length], i + length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _time(raw: bytes, *, micro: bool) -> str:
    parts = decode_message(raw, "Time")
    stamp = datetime.datetime.fromtimestamp(int(parts.get("seconds", 0)), datetime.UTC)
    if micro:
        micros = int(parts.get("nanos", 0)) // 1000
        return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{micros:06d}Z"
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_SCALARS: dict[str, Callable[[Any], Any]] = {
    "bytes": lambda value: value,
    "int": _signed,
    "bool": bool,
    "time": lambda value: _time(value, micro=False),
    "microtime": lambda value: _time(value, micro=True),
}
"""How a scalar field's wire value becomes its JSON value, by field type."""


def decode_message(buf: bytes, name: str) -> dict[str, Any]:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for number, _, value in _fields(buf):
        if number in schema:
            field, kind = schema[number]
            _decode_field(out, field, kind, value)
    return out


def _decode_field(out: dict[str, Any], field: str, kind: str, value: Any) -> None:
    """Set (or add to, for maps and lists) `out[field]` from one wire value of type `kind`."""
    if kind == "string":
        if value:  # Go writes empty strings that JSON would omit
            out[field] = value.decode()
    elif kind in _SCALARS:
        out[field] = _SCALARS[kind](value)
    elif kind.startswith("msg:"):
        out[field] = decode_message(value, kind[4:])
    elif kind.startswith("map:"):
        entry = {n: v for n, _, v in _fields(value)}
        key = entry.get(1, b"").decode()
        raw = entry.get(2, b"")
        out.setdefault(field, {})[key] = (
            base64.b64encode(raw).decode() if kind == "map:bytes" else raw.decode()
        )
    elif kind == "list:string":
        out.setdefault(field, []).append(value.decode())
    elif kind.startswith("list:msg:"):
        out.setdefault(field, []).append(decode_message(value, kind[9:]))


def decode(body: bytes, expected: str | None = None) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for (415 for unknown kinds)."""
    if not body.startswith(MAGIC):
        raise ApiError.bad_request("protobuf body without the k8s envelope")
    try:
        envelope = decode_message(body[len(MAGIC) :], "Unknown")
        type_meta = envelope.get("typeMeta", {})
        kind = type_meta.get("kind") or expected or ""
        if kind not in _OBJECT_KINDS:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"kubesim decodes protobuf only for {sorted(_OBJECT_KINDS)}; send "
                f"{kind or 'this object'} as application/json",
            )
        obj = decode_message(envelope.get("raw", b""), kind)
    except (ValueError, UnicodeDecodeError, KeyError) as exc:
        raise ApiError.bad_request(f"error decoding protobuf: {exc}") from exc
    if type_meta.get("apiVersion"):
        obj = {"apiVersion": type_meta["apiVersion"], **obj}
    if type_meta.get("kind"):
        obj = {"kind": type_meta["kind"], **obj}
    return obj


_OBJECT_KINDS = {
    "Secret",
    "ConfigMap",
    "Namespace",
    "ServiceAccount",
    "Lease",
    "DeleteOptions",
    "TokenRequest",
    "TokenReview",
    "SelfSubjectReview",
    "SelfSubjectAccessReview",
    "SubjectAccessReview",
    "LocalSubjectAccessReview",
}
