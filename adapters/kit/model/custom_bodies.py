"""The custom operation's YAML body: its limits and what every object in it must carry.

Admission (before an operation is recorded) and the planner (when it builds the plan) both read
a custom body through `load_custom_body`, so the two can never disagree on what is usable.
"""

from __future__ import annotations

from adapters.kit.model.objects import KubeObject
from adapters.kit.model.yaml_documents import ManifestError, load_documents
from serving.request_bounds import CUSTOM_BODY_MAX_BYTES

__all__ = [
    "CUSTOM_MAX_ALIAS_EXPANSIONS",
    "CUSTOM_MAX_BYTES",
    "CustomBodyInvalid",
    "load_custom_body",
]

CUSTOM_MAX_BYTES = CUSTOM_BODY_MAX_BYTES
"""Largest custom_body accepted (the request bounds' limit, also enforced by the loader)."""
CUSTOM_MAX_ALIAS_EXPANSIONS = 10_000
"""Nodes YAML aliases may add to a custom body: real manifests use a handful, bombs millions."""

_PUT_DOCUMENTS = "put the YAML documents to apply in custom_body"


class CustomBodyInvalid(ValueError):
    """The body cannot be applied; the message says what is wrong and how to fix it."""


def load_custom_body(body: str) -> list[KubeObject]:
    """The body's objects, read by the bounded YAML loader; each has a string metadata.name
    (and a string namespace, when it names one). `CustomBodyInvalid` otherwise."""
    if not body.strip():
        raise CustomBodyInvalid(f"is empty; {_PUT_DOCUMENTS}")
    try:
        objects = load_documents(
            body,
            max_bytes=CUSTOM_MAX_BYTES,
            max_alias_expansions=CUSTOM_MAX_ALIAS_EXPANSIONS,
            source="the YAML",
        )
    except ManifestError as exc:
        raise CustomBodyInvalid(str(exc)) from exc
    if not objects:
        raise CustomBodyInvalid(
            f"holds no Kubernetes objects (only empty documents); {_PUT_DOCUMENTS}"
        )
    for position, obj in enumerate(objects, start=1):
        _check_identity(position, obj)
    return objects


def _check_identity(position: int, obj: KubeObject) -> None:
    """Objects need a string metadata.name (and a string namespace, if any) to be applied."""
    where = f"object {position} ({obj['kind']})"
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise CustomBodyInvalid(
            f"{where} has no metadata mapping; every object needs metadata.name"
        )
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise CustomBodyInvalid(
            f"{where} has no metadata.name; name every object (generateName is not supported: "
            "re-applying would create duplicates)"
        )
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise CustomBodyInvalid(f"{where} {name}: metadata.namespace must be a string")
