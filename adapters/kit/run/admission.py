"""Request fields that must be parsed to be judged: the custom YAML body (cluster kubeconfigs
have their own judge, `request_kubeconfigs`).

The runner calls these before it records an operation, so a YAML bomb comes back to the client
at once as INVALID_ARGUMENT naming the field, and objects
the namespace and kind policy refuses come back as its `object_policy.ObjectRefusal`, instead of
failing later in the background. The planner, the policy's plan-time judgement and the cluster
session keep their own checks; these only move the verdict to the door. The body is read by
`custom_bodies.load_custom_body`, as the planner reads it, so a hostile body costs at most its
size limit.

This module imports only the model stage: the runner may use it without depending on planning
or applying.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.kit.model.custom_bodies import CustomBodyInvalid, load_custom_body
from adapters.kit.model.grants import NO_GRANT, PolicyGrant
from adapters.kit.model.object_policy import ObjectPolicy, ObjectRefusal
from adapters.kit.model.objects import KubeObject, crd_scopes, is_cluster_scoped
from serving.input_quoting import quoted

__all__ = ["CustomBodyPolicy", "FieldProblem", "check_custom_body"]


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
        objects = load_custom_body(body)
    except CustomBodyInvalid as exc:
        return _body_problem(str(exc))
    if policy.namespace_sent:
        problem = _namespace_problem(objects, policy.namespace)
        if problem is not None:
            return problem
    if policy.objects is not None:
        return policy.objects.admit_request(objects, policy.grant)
    return None


def _namespace_problem(objects: list[KubeObject], namespace: str) -> FieldProblem | None:
    """The first namespaced object naming another namespace than the one the request sent."""
    scopes = crd_scopes(objects)
    for obj in objects:
        own = obj["metadata"].get("namespace")
        if own and own != namespace and not is_cluster_scoped(obj, scopes):
            return _body_problem(
                f"{_describe(obj)} names namespace {quoted(own)} but the request's namespace is "
                f"{quoted(namespace)}; remove metadata.namespace from the object, send "
                f"namespace={quoted(own)}, or leave the request's namespace empty so each object "
                "keeps its own"
            )
    return None


def _body_problem(message: str) -> FieldProblem:
    return FieldProblem(field="custom_body", message=message)


def _describe(obj: KubeObject) -> str:
    metadata = obj["metadata"]
    where = metadata.get("namespace")
    return f"{obj['kind']} {where + '/' if where else ''}{metadata['name']}"
