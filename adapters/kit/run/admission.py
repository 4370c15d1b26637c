"""Request fields that must be parsed to be judged: the custom YAML body (cluster kubeconfigs
have their own judge, `request_kubeconfigs`).

The runner calls these before it records an operation, so a YAML bomb comes back to the client
at once as INVALID_ARGUMENT naming the field, and objects
the namespace and kind policy refuses come back as its `object_policy.ObjectRefusal`, instead of
failing later in the background. The planner, the policy's plan-time judgement and the cluster
session keep their own checks; these only move the verdict to the door. Parsing uses the kit's
bounded YAML loader, so a hostile body costs at most its size limit.

This module imports only `objects`, `object_policy` and `yaml_documents`: the runner may use it
without depending on planning or applying.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.kit.model.grants import NO_GRANT, PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy, ObjectRefusal
from adapters.kit.model.objects import KubeObject, crd_scopes, is_cluster_scoped
from adapters.kit.model.yaml_documents import ManifestError, load_documents
from serving.input_quoting import quoted
from serving.request_bounds import CUSTOM_BODY_MAX_BYTES

__all__ = [
    "CUSTOM_MAX_ALIAS_EXPANSIONS",
    "CUSTOM_MAX_BYTES",
    "CustomBodyPolicy",
    "FieldProblem",
    "check_custom_body",
]

CUSTOM_MAX_BYTES = CUSTOM_BODY_MAX_BYTES
"""Largest custom_body accepted (the request bounds' limit, also enforced by the loader)."""
CUSTOM_MAX_ALIAS_EXPANSIONS = 10_000
"""Nodes YAML aliases may add to a custom body: real manifests use a handful, bombs millions."""


@dataclass(frozen=True, kw_only=True)
class FieldProblem:
    """Why one request field is refused; ``field`` is its path (``custom_body``)."""

    field: str
    message: str


@dataclass(frozen=True, kw_only=True)
class CustomBodyPolicy:
    """What the request says about the objects its custom_body may hold."""

    namespace: str
    """The namespace objects without one go to."""
    namespace_sent: bool
    """True when the request named the namespace (kubectl -n): objects must then agree with it."""
    objects: ObjectPolicy | None
    """The policy the objects are judged by; None skips it (a delete removes only what the
    release's inventory holds, whatever the YAML says)."""
    grant: PolicyGrant = NO_GRANT


def check_custom_body(body: str, policy: CustomBodyPolicy) -> FieldProblem | ObjectRefusal | None:
    """Parse ``body`` with the bounded loader and judge its objects; None when it is usable.

    A malformed body is a `FieldProblem`; objects the policy refuses from the request alone are
    its `ObjectRefusal` (what needs the cluster's discovery is judged at plan time).
    """
    try:
        objects = load_documents(
            body,
            max_bytes=CUSTOM_MAX_BYTES,
            max_alias_expansions=CUSTOM_MAX_ALIAS_EXPANSIONS,
            source="the YAML",
        )
    except ManifestError as exc:
        return _body_problem(str(exc))
    if not objects:
        return _body_problem(
            "holds no Kubernetes objects (only empty documents); put the YAML documents to "
            "apply in custom_body"
        )
    for position, obj in enumerate(objects, start=1):
        problem = _identity_problem(position, obj)
        if problem is not None:
            return problem
    scopes = crd_scopes(objects)
    cluster_scoped = [o for o in objects if is_cluster_scoped(o, scopes)]
    if policy.namespace_sent:
        scoped_ids = {id(o) for o in cluster_scoped}
        for obj in objects:
            if id(obj) in scoped_ids:
                continue
            own = obj["metadata"].get("namespace")
            if own and own != policy.namespace:
                return _body_problem(
                    f"{_describe(obj)} names namespace {quoted(own)} but the request's namespace "
                    f"is {quoted(policy.namespace)}; remove metadata.namespace from the object, "
                    f"send namespace={quoted(own)}, or leave the request's namespace empty so "
                    "each object "
                    "keeps its own"
                )
    if policy.objects is not None:
        return policy.objects.admit_request(objects, policy.grant)
    return None


def _body_problem(message: str) -> FieldProblem:
    return FieldProblem(field="custom_body", message=message)


def _identity_problem(position: int, obj: KubeObject) -> FieldProblem | None:
    """Objects need a string metadata.name (and a string namespace, if any) to be applied."""
    where = f"object {position} ({obj['kind']})"
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return _body_problem(f"{where} has no metadata mapping; every object needs metadata.name")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return _body_problem(
            f"{where} has no metadata.name; name every object (generateName is not supported: "
            "re-applying would create duplicates)"
        )
    namespace = metadata.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        return _body_problem(f"{where} {name}: metadata.namespace must be a string")
    return None


def _describe(obj: KubeObject) -> str:
    metadata = obj["metadata"]
    where = metadata.get("namespace")
    return f"{obj['kind']} {where + '/' if where else ''}{metadata['name']}"
