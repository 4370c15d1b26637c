"""The one table of what each RPC needs: a verb on a resource of API group ``meshplane.io``.

Every method of both services the coordinator serves (its own ``CoordinatorService`` and the
adapter contract it passes through) has a rule here; a method without one is refused. A rule
names the verb and resource a call needs; where that depends on the request (which operation
category, which namespace, whose operation) the rule's ``scope`` works it out, with what the
coordinator knows (catalogues, recorded operations). The same accesses are checked against the
three built-in roles (``GRANTS``) or asked of Kubernetes as SubjectAccessReviews, so RBAC Roles
and ClusterRoles grant meshplane permissions with the same words (``cluster_role_rules``).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from coordinator.server.identity.subjects import Subject
from coordinator.store.records import OperationRecord
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = [
    "API_GROUP",
    "DEFAULT_PROTECTED_NAMESPACES",
    "GRANTS",
    "ROLE_GROUPS",
    "RULES",
    "Access",
    "CallFacts",
    "CallScope",
    "MethodRule",
    "Role",
    "UsernameMismatch",
    "cluster_role_rules",
    "custom_body_namespaces",
    "least_role",
    "role_of",
]

API_GROUP = "meshplane.io"
COORDINATOR = "meshplane.coordinator.v1.CoordinatorService"
ADAPTER = "meshplane.adapter.v1.MeshAdapterService"
DEFAULT_PROTECTED_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")
ADOPT_PARAMETER = "adopt-existing"
"""The request parameter that lets an operation take over objects meshplane does not own."""
PURGE_CRDS_PARAMETER = "purge-crds"
"""With ``force``, a delete removes its CRDs and every custom resource of them, users' too."""
_MUTATING_VERBS = frozenset({"create", "update", "delete"})
_MAX_BODY_DOCUMENTS = 1000


class Role(enum.IntEnum):
    """The built-in roles, each including everything of the ones below it."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


ROLE_GROUPS: Mapping[str, Role] = {
    "meshplane:viewers": Role.VIEWER,
    "meshplane:operators": Role.OPERATOR,
    "meshplane:admins": Role.ADMIN,
}
"""Groups (token file column 4, certificate O) that carry a role without --authz-kubernetes."""

GRANTS: Mapping[tuple[str, str], Role] = {
    ("adapters", "get"): Role.VIEWER,
    ("adapters", "list"): Role.VIEWER,
    ("catalogues", "list"): Role.VIEWER,
    ("meshes/status", "get"): Role.VIEWER,
    ("meshes/versions", "get"): Role.VIEWER,
    ("operations", "get"): Role.VIEWER,
    ("operations", "list"): Role.VIEWER,
    ("events", "watch"): Role.VIEWER,
    ("performancetests", "get"): Role.VIEWER,
    ("performancetests", "list"): Role.VIEWER,
    # sample applications, configuration, validation and custom YAML in ordinary namespaces
    ("operations", "create"): Role.OPERATOR,
    # cancelling an operation the caller started
    ("operations", "update"): Role.OPERATOR,
    ("performancetests", "create"): Role.OPERATOR,
    # rendering an operation's manifests (`meshplane template`; Secret values redacted)
    ("manifests", "get"): Role.OPERATOR,
    # mesh install/upgrade (create) and uninstall (delete)
    ("meshes", "create"): Role.ADMIN,
    ("meshes", "delete"): Role.ADMIN,
    # operations in protected namespaces, or taking over objects meshplane does not own
    ("privilegedoperations", "create"): Role.ADMIN,
    # cancelling another user's operation
    ("operations/others", "update"): Role.ADMIN,
    ("adapters", "create"): Role.ADMIN,
    ("adapters", "delete"): Role.ADMIN,
    ("auditrecords", "list"): Role.ADMIN,
}
"""The least role that holds each (resource, verb)."""


@dataclass(frozen=True, kw_only=True)
class Access:
    """One permission a call needs: a verb on a resource (``name/subresource`` allowed)."""

    verb: str
    resource: str
    namespace: str = ""
    name: str = ""

    @property
    def mutating(self) -> bool:
        """True for create, update and delete."""
        return self.verb in _MUTATING_VERBS

    def describe(self) -> str:
        """``create meshes in namespace istio-system``, as a denial names it."""
        where = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
        return f"{self.verb} {self.resource} ({API_GROUP}) {where}"


@dataclass(frozen=True, kw_only=True)
class CallFacts:
    """What the coordinator knows that a rule may consult."""

    catalogue: Callable[[str], Sequence[apb.OperationDescriptor]]
    meshes: Callable[[], Sequence[str]]
    operation: Callable[[str], Awaitable[OperationRecord | None]]
    protected_namespaces: frozenset[str] = frozenset(DEFAULT_PROTECTED_NAMESPACES)


@dataclass(frozen=True, kw_only=True)
class CallScope:
    """What one call needs, and what the audit record says it touched."""

    accesses: tuple[Access, ...]
    mesh: str = ""
    namespace: str = ""
    operation_id: str = ""

    @property
    def mutating(self) -> bool:
        """True when any access changes something (such calls are always audited)."""
        return any(access.mutating for access in self.accesses)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One incoming call as a rule sees it."""

    request: Any
    """The decoded message (CoordinatorService) or the raw bytes (passed-through methods)."""
    mesh_header: str
    subject: Subject


Scope = Callable[[Call, CallFacts], Awaitable[CallScope]]


@dataclass(frozen=True, kw_only=True)
class MethodRule:
    """How one RPC is authorized: a fixed access, or a ``scope`` worked out per call."""

    verb: str
    resource: str
    scope: Scope | None = None
    bind_subject: Callable[[Any, Subject], Any] | None = None
    """Rewrites the request so the adapter sees the authenticated user (ApplyOperation)."""
    answer_operation_id: Callable[[Any], str] | None = None
    """The operation id in the response, for the audit record."""

    async def scope_of(self, call: Call, facts: CallFacts) -> CallScope:
        """The accesses this call needs."""
        if self.scope is not None:
            return await self.scope(call, facts)
        return CallScope(
            accesses=(Access(verb=self.verb, resource=self.resource),), mesh=call.mesh_header
        )


class UsernameMismatch(ValueError):
    """A request names a user other than the authenticated caller."""


# -- ApplyOperation -------------------------------------------------------------------------


def custom_body_namespaces(body: str) -> set[str]:
    """Namespaces named by ``metadata.namespace`` of the body's top-level objects.

    The YAML is composed, not constructed: aliases stay references, nothing is expanded. A body
    that does not parse names nothing here (the adapter refuses it with the reason).
    """
    found: set[str] = set()
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        for count, document in enumerate(yaml.compose_all(body, Loader=loader)):
            if count >= _MAX_BODY_DOCUMENTS:
                break
            metadata = _mapping_value(document, "metadata")
            namespace = _mapping_value(metadata, "namespace")
            if isinstance(namespace, yaml.ScalarNode) and str(namespace.value).strip():
                found.add(str(namespace.value).strip())
    except yaml.YAMLError:
        return found
    return found


def _mapping_value(node: Any, key: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def _apply_accesses(
    mesh: str, request: apb.ApplyOperationRequest, facts: CallFacts
) -> tuple[tuple[Access, ...], str]:
    """What an ApplyOperation needs, and the namespace it runs in."""
    descriptor = next((d for d in facts.catalogue(mesh) if d.id == request.operation), None)
    namespace = request.namespace or (descriptor.default_namespace if descriptor else "")
    if descriptor is None and mesh not in facts.meshes():
        # An unknown mesh: the servicer answers NOT_FOUND naming the known ones.
        return (Access(verb="create", resource="operations", namespace=namespace),), namespace
    if descriptor is None or descriptor.category == apb.OPERATION_CATEGORY_INSTALL:
        # Install/uninstall, and anything the catalogue does not describe, is the admins'.
        verb = "delete" if request.delete else "create"
        return (Access(verb=verb, resource="meshes", namespace=namespace, name=mesh),), namespace
    namespaces = {namespace}
    if descriptor.category == apb.OPERATION_CATEGORY_CUSTOM:
        namespaces |= custom_body_namespaces(request.custom_body)
    adopts = request.parameters.get(ADOPT_PARAMETER, "").lower() == "true"
    forces = request.delete and request.parameters.get(PURGE_CRDS_PARAMETER, "") == "force"
    accesses = [
        Access(
            verb="create",
            resource=(
                "privilegedoperations"
                if name in facts.protected_namespaces or adopts or forces
                else "operations"
            ),
            namespace=name,
            name=mesh,
        )
        for name in sorted(namespaces)
    ]
    return tuple(accesses), namespace


async def _apply_scope(call: Call, facts: CallFacts) -> CallScope:
    request: cpb.ApplyOperationRequest = call.request
    mesh = request.mesh.strip().lower()
    accesses, namespace = _apply_accesses(mesh, request.request, facts)
    return CallScope(
        accesses=accesses,
        mesh=mesh,
        namespace=namespace,
        operation_id=request.request.operation_id,
    )


async def _passthrough_apply_scope(call: Call, facts: CallFacts) -> CallScope:
    request = _parsed(apb.ApplyOperationRequest, call.request)
    accesses, namespace = _apply_accesses(call.mesh_header, request, facts)
    return CallScope(
        accesses=accesses,
        mesh=call.mesh_header,
        namespace=namespace,
        operation_id=request.operation_id,
    )


def _bind_username(request: apb.ApplyOperationRequest, subject: Subject) -> None:
    if request.username and request.username != subject.user:
        raise UsernameMismatch(
            f"username {request.username[:100]!r} is not the authenticated caller "
            f"{subject.user!r}; leave username empty (the coordinator fills it in)"
        )
    request.username = subject.user


def _bind_apply(request: cpb.ApplyOperationRequest, subject: Subject) -> cpb.ApplyOperationRequest:
    _bind_username(request.request, subject)
    return request


def _bind_passthrough_apply(raw: bytes, subject: Subject) -> bytes:
    request = _parsed(apb.ApplyOperationRequest, raw)
    _bind_username(request, subject)
    encoded: bytes = request.SerializeToString()
    return encoded


# -- operations by id -----------------------------------------------------------------------


async def _operation_scope(
    operation_id: str, mesh: str, facts: CallFacts, *, verb: str, subject: Subject
) -> CallScope:
    record = await facts.operation(operation_id) if operation_id else None
    if record is None:
        # Unknown: the servicer answers NOT_FOUND; the least access the verb needs is asked.
        return CallScope(
            accesses=(Access(verb=verb, resource="operations", name=operation_id),),
            mesh=mesh,
            operation_id=operation_id,
        )
    namespace = str(record.request.get("namespace", "") or "")
    resource = "operations"
    if verb == "update" and record.username != subject.user:
        resource = "operations/others"
    return CallScope(
        accesses=(Access(verb=verb, resource=resource, namespace=namespace, name=operation_id),),
        mesh=record.mesh,
        namespace=namespace,
        operation_id=operation_id,
    )


def _by_operation_id(verb: str, *, raw: type[Any] | None = None) -> Scope:
    async def scope(call: Call, facts: CallFacts) -> CallScope:
        request = call.request if raw is None else _parsed(raw, call.request)
        return await _operation_scope(
            request.operation_id, call.mesh_header, facts, verb=verb, subject=call.subject
        )

    return scope


def _mesh_field(verb: str, resource: str) -> Scope:
    async def scope(call: Call, facts: CallFacts) -> CallScope:
        mesh = str(getattr(call.request, "mesh", "")).strip().lower()
        return CallScope(accesses=(Access(verb=verb, resource=resource, name=mesh),), mesh=mesh)

    return scope


def _parsed(message: type[Any], raw: bytes) -> Any:
    """A passed-through request decoded (an undecodable one as empty: the adapter refuses it)."""
    try:
        return message.FromString(raw)
    except Exception:
        return message()


def _apply_answer(response: cpb.ApplyOperationResponse) -> str:
    return str(response.operation_id)


def _passthrough_apply_answer(raw: bytes) -> str:
    return str(_parsed(apb.ApplyOperationResponse, raw).operation_id)


# -- the table ------------------------------------------------------------------------------

RULES: Mapping[str, MethodRule] = {
    f"/{COORDINATOR}/ListAdapters": MethodRule(verb="list", resource="adapters"),
    f"/{COORDINATOR}/RegisterAdapter": MethodRule(verb="create", resource="adapters"),
    f"/{COORDINATOR}/DeregisterAdapter": MethodRule(verb="delete", resource="adapters"),
    f"/{COORDINATOR}/ListOperations": MethodRule(verb="list", resource="catalogues"),
    f"/{COORDINATOR}/ListMeshVersions": MethodRule(
        verb="get", resource="meshes/versions", scope=_mesh_field("get", "meshes/versions")
    ),
    f"/{COORDINATOR}/GetMeshStatus": MethodRule(
        verb="get", resource="meshes/status", scope=_mesh_field("get", "meshes/status")
    ),
    f"/{COORDINATOR}/ApplyOperation": MethodRule(
        verb="create",
        resource="operations",
        scope=_apply_scope,
        bind_subject=_bind_apply,
        answer_operation_id=_apply_answer,
    ),
    f"/{COORDINATOR}/GetOperation": MethodRule(
        verb="get", resource="operations", scope=_by_operation_id("get")
    ),
    f"/{COORDINATOR}/CancelOperation": MethodRule(
        verb="update", resource="operations", scope=_by_operation_id("update")
    ),
    f"/{COORDINATOR}/ListOperationHistory": MethodRule(verb="list", resource="operations"),
    f"/{COORDINATOR}/WatchEvents": MethodRule(verb="watch", resource="events"),
    f"/{COORDINATOR}/RunPerformanceTest": MethodRule(verb="create", resource="performancetests"),
    f"/{COORDINATOR}/ListPerformanceResults": MethodRule(verb="list", resource="performancetests"),
    f"/{COORDINATOR}/GetPerformanceResult": MethodRule(verb="get", resource="performancetests"),
    f"/{COORDINATOR}/ComparePerformanceResults": MethodRule(
        verb="list", resource="performancetests"
    ),
    f"/{COORDINATOR}/ListAuditRecords": MethodRule(verb="list", resource="auditrecords"),
    f"/{COORDINATOR}/RenderOperation": MethodRule(
        verb="get", resource="manifests", scope=_mesh_field("get", "manifests")
    ),
    f"/{ADAPTER}/GetInfo": MethodRule(verb="get", resource="adapters"),
    f"/{ADAPTER}/ListOperations": MethodRule(verb="list", resource="catalogues"),
    f"/{ADAPTER}/ListMeshVersions": MethodRule(verb="get", resource="meshes/versions"),
    f"/{ADAPTER}/ApplyOperation": MethodRule(
        verb="create",
        resource="operations",
        scope=_passthrough_apply_scope,
        bind_subject=_bind_passthrough_apply,
        answer_operation_id=_passthrough_apply_answer,
    ),
    f"/{ADAPTER}/GetOperation": MethodRule(
        verb="get",
        resource="operations",
        scope=_by_operation_id("get", raw=apb.GetOperationRequest),
    ),
    f"/{ADAPTER}/CancelOperation": MethodRule(
        verb="update",
        resource="operations",
        scope=_by_operation_id("update", raw=apb.CancelOperationRequest),
    ),
    f"/{ADAPTER}/StreamEvents": MethodRule(verb="watch", resource="events"),
    f"/{ADAPTER}/GetMeshStatus": MethodRule(verb="get", resource="meshes/status"),
    f"/{ADAPTER}/RenderOperation": MethodRule(verb="get", resource="manifests"),
}


def least_role(access: Access) -> Role:
    """The built-in role that holds ``access`` (ADMIN for anything the table does not list)."""
    return GRANTS.get((access.resource, access.verb), Role.ADMIN)


def role_of(subject: Subject) -> Role:
    """The highest built-in role among the subject's groups."""
    return max((ROLE_GROUPS.get(group, Role.NONE) for group in subject.groups), default=Role.NONE)


def cluster_role_rules(role: Role) -> list[dict[str, Any]]:
    """RBAC ``rules`` of a ClusterRole granting what ``role`` holds (for charts and docs)."""
    by_resource: dict[str, set[str]] = {}
    for (resource, verb), least in GRANTS.items():
        if least <= role:
            by_resource.setdefault(resource, set()).add(verb)
    by_verbs: dict[tuple[str, ...], list[str]] = {}
    for resource, verbs in sorted(by_resource.items()):
        by_verbs.setdefault(tuple(sorted(verbs)), []).append(resource)
    return [
        {"apiGroups": [API_GROUP], "resources": resources, "verbs": list(verbs)}
        for verbs, resources in sorted(by_verbs.items())
    ]
