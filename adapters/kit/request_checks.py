"""Request fields that must be parsed to be judged: the custom YAML body and cluster kubeconfigs.

The runner calls these before it records an operation, so a YAML bomb, a cluster-scoped object
nobody opted into or a kubeconfig that cannot work comes back to the client at once as
INVALID_ARGUMENT naming the field, instead of failing later in the background. The planner and
the cluster session keep their own checks; these only move the verdict to the door. Parsing
uses the kit's bounded YAML loader, so a hostile body costs at most its size limit.

This module imports only `objects` and `yaml_documents`: the runner may use it without
depending on planning or applying.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.kit.objects import KubeObject, crd_scopes, is_cluster_scoped
from adapters.kit.yaml_documents import ManifestError, load_documents, load_mapping

__all__ = [
    "ALLOW_CLUSTER_SCOPED",
    "CUSTOM_MAX_ALIAS_EXPANSIONS",
    "CUSTOM_MAX_BYTES",
    "KUBECONFIG_MAX_BYTES",
    "CustomBodyPolicy",
    "FieldProblem",
    "check_custom_body",
    "check_kubeconfig",
]

ALLOW_CLUSTER_SCOPED = "allow_cluster_scoped"
"""The custom operation's opt-in parameter (the same name the planner reads)."""
CUSTOM_MAX_BYTES = 1024 * 1024
"""Largest custom_body accepted: real manifests are kilobytes; the gRPC limit is larger."""
CUSTOM_MAX_ALIAS_EXPANSIONS = 10_000
"""Nodes YAML aliases may add to a custom body: real manifests use a handful, bombs millions."""
KUBECONFIG_MAX_BYTES = 1024 * 1024
"""Largest kubeconfig accepted: one with embedded certificates is a few kilobytes."""
_KUBECONFIG_MAX_ALIAS_EXPANSIONS = 1_000

_KUBECONFIG_HINT = "send the output of `kubectl config view --raw --minify --flatten`"


@dataclass(frozen=True, kw_only=True)
class FieldProblem:
    """Why one request field is refused; ``field`` is its path (``clusters[1].kubeconfig``)."""

    field: str
    message: str


@dataclass(frozen=True, kw_only=True)
class CustomBodyPolicy:
    """What the request says about the objects its custom_body may hold."""

    namespace: str
    """The namespace objects without one go to."""
    namespace_sent: bool
    """True when the request named the namespace (kubectl -n): objects must then agree with it."""
    cluster_scoped_parameter: bool
    """True when the operation accepts `allow_cluster_scoped` at all."""
    allow_cluster_scoped: bool


def check_custom_body(body: str, policy: CustomBodyPolicy) -> FieldProblem | None:
    """Parse ``body`` with the bounded loader and judge its objects; None when it is usable.

    Cluster-scoped objects are recognised from the built-in table and from CRDs in the same
    body; resources of CRDs already in the cluster are left to the planner, which can ask it.
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
    if cluster_scoped and not policy.allow_cluster_scoped:
        shown = ", ".join(_describe(o) for o in cluster_scoped[:5])
        if len(cluster_scoped) > 5:
            shown += f" and {len(cluster_scoped) - 5} more"
        remedy = (
            f"send parameters.{ALLOW_CLUSTER_SCOPED}=true to apply them, or remove them"
            if policy.cluster_scoped_parameter
            else "this operation applies namespaced objects only; remove them"
        )
        return _body_problem(
            f"holds cluster-scoped objects ({shown}); they affect every namespace: {remedy}"
        )
    if policy.namespace_sent:
        scoped_ids = {id(o) for o in cluster_scoped}
        for obj in objects:
            if id(obj) in scoped_ids:
                continue
            own = obj["metadata"].get("namespace")
            if own and own != policy.namespace:
                return _body_problem(
                    f"{_describe(obj)} names namespace {own!r} but the request's namespace is "
                    f"{policy.namespace!r}; remove metadata.namespace from the object, send "
                    f"namespace={own!r}, or leave the request's namespace empty so each object "
                    "keeps its own"
                )
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


def check_kubeconfig(index: int, kubeconfig: str, context: str) -> FieldProblem | None:
    """Judge ``clusters[index]``'s kubeconfig text the way the Kubernetes client will use it.

    It must be one YAML mapping whose context (the request's ``context``, else
    ``current-context``) exists, names a user that exists (if any) and a cluster with an
    http(s) server URL. An empty kubeconfig means the adapter's own and is not judged here.
    """
    if not kubeconfig:
        return None
    field = f"clusters[{index}].kubeconfig"
    try:
        config = load_mapping(
            kubeconfig,
            max_bytes=KUBECONFIG_MAX_BYTES,
            max_alias_expansions=_KUBECONFIG_MAX_ALIAS_EXPANSIONS,
            source="the kubeconfig",
        )
    except ManifestError as exc:
        return FieldProblem(field=field, message=f"{exc}; {_KUBECONFIG_HINT}")
    sections: dict[str, list[Mapping[str, Any]]] = {}
    for section in ("clusters", "contexts", "users"):
        raw = config.get(section)
        entries, problem = _section(section, [] if raw is None and section == "users" else raw)
        if problem:
            return FieldProblem(field=field, message=problem)
        sections[section] = entries
    context_field = f"clusters[{index}].context" if context else field
    context_name = context or config.get("current-context") or ""
    if not isinstance(context_name, str) or not context_name:
        return FieldProblem(
            field=field,
            message=f"has no current-context and clusters[{index}].context is empty; set "
            "current-context in the kubeconfig or name a context in the request",
        )
    entry, problem = _named(sections["contexts"], "contexts", context_name)
    if entry is None:
        return FieldProblem(field=context_field, message=problem)
    body = entry.get("context")
    if not isinstance(body, dict):
        return FieldProblem(
            field=field, message=f"context {context_name!r} has no `context` mapping"
        )
    user = body.get("user")
    if user:
        found, problem = _named(sections["users"], "users", str(user))
        if found is None:
            return FieldProblem(field=field, message=f"context {context_name!r}: {problem}")
    cluster_name = body.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        return FieldProblem(
            field=field, message=f"context {context_name!r} names no cluster (context.cluster)"
        )
    cluster, problem = _named(sections["clusters"], "clusters", cluster_name)
    if cluster is None:
        return FieldProblem(field=field, message=f"context {context_name!r}: {problem}")
    settings = cluster.get("cluster")
    server = settings.get("server") if isinstance(settings, dict) else None
    problem = _server_problem(server)
    if problem:
        return FieldProblem(
            field=field, message=f"cluster {cluster_name!r} (context {context_name!r}) {problem}"
        )
    return None


def _section(section: str, raw: object) -> tuple[list[Mapping[str, Any]], str]:
    """The entries of a kubeconfig list (`clusters`, `contexts`, `users`), or why it is unusable."""
    if not isinstance(raw, list):
        shown = "missing" if raw is None else f"a {type(raw).__name__}"
        return [], (
            f"`{section}` is {shown}, not a list; this does not look like a kubeconfig: "
            f"{_KUBECONFIG_HINT}"
        )
    entries: list[Mapping[str, Any]] = []
    for position, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            return [], f"{section}[{position}] is not a mapping with a string `name`"
        entries.append(entry)
    return entries, ""


def _named(
    entries: list[Mapping[str, Any]], section: str, name: str
) -> tuple[Mapping[str, Any] | None, str]:
    """The one entry of ``section`` called ``name``, or None and why not."""
    found = [e for e in entries if e["name"] == name]
    if len(found) == 1:
        return found[0], ""
    if found:
        return None, f"{section} has {len(found)} entries named {name!r}; names must be unique"
    known = ", ".join(repr(e["name"]) for e in entries[:10]) or "none"
    return None, f"{section} has no entry named {name!r} (it has {known})"


def _server_problem(server: object) -> str:
    if not isinstance(server, str) or not server:
        return "has no server URL (cluster.server)"
    parsed = urllib.parse.urlsplit(server)
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        return f"has server {server[:200]!r}, which is not an http(s) URL with a host"
    try:
        parsed.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return f"has server {server[:200]!r}, whose port is not a number from 0 to 65535"
    return ""
