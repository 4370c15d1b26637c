"""The namespace and kind policy: which objects an operation may write, and who may allow more.

One decision for every object any operation is about to apply, made twice with the same rules:
at admission (`ObjectPolicy.admit_request`, from the request alone, so an attack is refused
before anything is recorded) and at plan time (`ObjectPolicy.judge`, with the cluster's own
discovery deciding what is cluster-scoped, so nothing passes because a static table missed a
kind).

Where an object comes from decides which rules hold (`Origin`):

* DECLARED objects are what the mesh's declaration renders: its charts from the configured
  repository, its manifests from the configured location, its builders' objects. A mesh install
  creates CRDs, webhooks and ClusterRoles by design, and the adapter's own ClusterRole (`meshplane
  rbac MESH`) bounds what they can be, so their kinds are trusted. They are still held to
  protected namespaces and to ownership.
* REQUESTED objects come from the request (``custom_body``) and are held to every rule:
  protected namespaces; kinds the cluster does not serve are refused; cluster-scoped kinds
  (whatever discovery says, CRDs, admission control, cluster RBAC, PriorityClasses), namespaced
  RBAC that escalates or binds identities beyond its namespace, and privileged pod templates
  need the operator's ``--allow-elevated-objects``.

Refusals are PERMISSION_DENIED (the policy forbids it; an operator switch allows it), except a
kind the cluster does not serve, which is FAILED_PRECONDITION. What a request may do beyond the
defaults arrives as a `grants.PolicyGrant`; ownership (never adopting an object meshplane does not
own) is enforced by the apply engine with `not_owned_detail` for its message.

This module imports only the kit's vocabulary (objects, plans, operations, grants), so the
runner may use it at admission without depending on planning, applying or the cluster.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.kit.model.grants import ADMIN_GRANT, NO_GRANT, PolicyGrant
from adapters.kit.model.objects import CLUSTER_SCOPED_KINDS, KubeObject, ObjectRef, crd_scopes
from adapters.kit.model.plans import Adoption, ApplyPlan
from adapters.kit.model.records import ErrorDetail
from adapters.kit.model.yaml_documents import DEFAULT_MAX_DEPTH

__all__ = [
    "ADOPT_EXISTING",
    "ALLOW_ELEVATED_FLAG",
    "ALLOW_PROTECTED_FLAG",
    "DEFAULT_PROTECTED_NAMESPACES",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "PROTECTED_NAMESPACES_FLAG",
    "RETIRED_CLUSTER_SCOPED_PARAMETER",
    "ObjectPolicy",
    "ObjectRefusal",
    "Origin",
    "PlanVerdict",
    "PolicyCluster",
    "Rule",
    "not_owned_detail",
    "protected_namespaces_from",
    "retired_parameter_message",
]

DEFAULT_PROTECTED_NAMESPACES: frozenset[str] = frozenset(
    {"kube-system", "kube-public", "kube-node-lease"}
)
ALLOW_ELEVATED_FLAG = "--allow-elevated-objects"
ALLOW_PROTECTED_FLAG = "--allow-protected-namespaces"
PROTECTED_NAMESPACES_FLAG = "--protected-namespaces"
ADOPT_EXISTING = "adopt-existing"
"""The request parameter that lets an operation take over objects meshplane does not own."""
RETIRED_CLUSTER_SCOPED_PARAMETER = "allow_cluster_scoped"
"""The custom operation's former opt-in: a request can no longer elevate itself."""

PERMISSION_DENIED = "PERMISSION_DENIED"
FAILED_PRECONDITION = "FAILED_PRECONDITION"

_RBAC = "rbac.authorization.k8s.io"
_SHOWN = 100
"""Characters of a request-supplied name quoted in a refusal."""
_ESCALATING_VERBS = frozenset({"*", "escalate", "bind", "impersonate"})
_ESCALATING_CLUSTER_ROLES = frozenset({"cluster-admin", "admin", "edit"})
"""Built-in ClusterRoles known to escalate (admin/edit grant bind, escalate or impersonate)."""
_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
"""Capabilities the Pod Security baseline profile lets a container add."""
_MAX_DEPTH = DEFAULT_MAX_DEPTH
"""How deep pod templates are looked for: as deep as the YAML loader lets a document nest."""


class Origin(enum.Enum):
    """Who chose an object: the mesh's declaration, or the request."""

    DECLARED = "declared"
    REQUESTED = "requested"


class Rule(enum.Enum):
    """The rule a refusal cites (its value is what messages and docs name)."""

    PROTECTED_NAMESPACE = "protected-namespace"
    UNKNOWN_KIND = "unknown-kind"
    CLUSTER_SCOPED = "cluster-scoped"
    CLUSTER_RBAC = "cluster-rbac"
    ADMISSION_CONTROL = "admission-control"
    CUSTOM_RESOURCE_DEFINITION = "custom-resource-definition"
    PRIORITY_CLASS = "priority-class"
    RBAC_ESCALATION = "rbac-escalation"
    PRIVILEGED_WORKLOAD = "privileged-workload"


_KIND_RULES: dict[tuple[str, str], Rule] = {
    ("apiextensions.k8s.io", "CustomResourceDefinition"): Rule.CUSTOM_RESOURCE_DEFINITION,
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): Rule.ADMISSION_CONTROL,
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): Rule.ADMISSION_CONTROL,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): Rule.ADMISSION_CONTROL,
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"): Rule.ADMISSION_CONTROL,
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicy"): Rule.ADMISSION_CONTROL,
    ("admissionregistration.k8s.io", "MutatingAdmissionPolicyBinding"): Rule.ADMISSION_CONTROL,
    (_RBAC, "ClusterRole"): Rule.CLUSTER_RBAC,
    (_RBAC, "ClusterRoleBinding"): Rule.CLUSTER_RBAC,
    ("scheduling.k8s.io", "PriorityClass"): Rule.PRIORITY_CLASS,
}


@dataclass(frozen=True, kw_only=True)
class ObjectRefusal:
    """Why one object may not be written, and how an operator (or the request) allows it."""

    subject: str
    """The object, ``Kind namespace/name`` ('' when the request's namespace is refused)."""
    rule: Rule
    reason: str
    remedy: str
    code: str = PERMISSION_DENIED
    others: int = 0
    """How many more objects of the same request were refused (only the first is described)."""

    @property
    def message(self) -> str:
        """One line: the object, what is wrong with it, the rule, and the way to allow it."""
        more = f" ({self.others} more objects refused)" if self.others else ""
        return f"{self._what()} (rule {self.rule.value}); {self.remedy}{more}"

    def _what(self) -> str:
        return f"{self.subject}: {self.reason}" if self.subject else self.reason

    def detail(self) -> ErrorDetail:
        """The refusal as the ErrorDetail of a failed operation."""
        return ErrorDetail(
            code=self.code,
            message=f"{self._what()} (rule {self.rule.value})",
            probable_cause=f"the adapter's object policy refuses this ({self.rule.value})",
            suggested_remediation=self.remedy,
        )


class ServedKind(Protocol):
    """What discovery says about one kind (`discovery.ApiResource` is one)."""

    @property
    def namespaced(self) -> bool:
        """False for cluster-scoped kinds."""
        ...


class PolicyCluster(Protocol):
    """The cluster reads plan-time judging needs (`cluster.ClusterSession` is one)."""

    async def resource_for(self, api_version: str, kind: str) -> ServedKind | None:
        """The served kind, or None when the cluster does not serve it."""
        ...

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """The object, or None."""
        ...


@dataclass(frozen=True, kw_only=True)
class PlanVerdict:
    """The policy's answer for one plan: a refusal, or what the apply engine may adopt."""

    refusal: ObjectRefusal | None
    adoption: Adoption


@dataclass(frozen=True, kw_only=True)
class ObjectPolicy:
    """The operator's policy: protected namespaces and the switches every request gets."""

    protected_namespaces: frozenset[str] = DEFAULT_PROTECTED_NAMESPACES
    operator: PolicyGrant = NO_GRANT
    """What the adapter's flags allow every request (``--allow-elevated-objects``, ...)."""

    def grant_for(self, parameters: Mapping[str, str], *, admin: bool = False) -> PolicyGrant:
        """The grant of one admitted request: the operator's, plus adoption when asked for,
        plus `ADMIN_GRANT` for a caller a trusted coordinator vouches for as an admin."""
        return (
            self.operator
            | (ADMIN_GRANT if admin else NO_GRANT)
            | PolicyGrant(adopt=parameters.get(ADOPT_EXISTING, "").lower() == "true")
        )

    def namespace_refusal(
        self, namespace: str, grant: PolicyGrant, *, subject: str = ""
    ) -> ObjectRefusal | None:
        """The refusal to write into ``namespace`` (the request's), or None."""
        if namespace not in self.protected_namespaces or grant.protected_namespaces:
            return None
        return ObjectRefusal(
            subject=subject,
            rule=Rule.PROTECTED_NAMESPACE,
            reason=f"namespace {namespace} is protected",
            remedy=_protected_remedy(),
        )

    def admit_request(
        self, objects: Sequence[KubeObject], grant: PolicyGrant
    ) -> ObjectRefusal | None:
        """Judge request-supplied objects from the request alone (no cluster access).

        Refuses what is certain without discovery: protected namespaces named by an object,
        built-in cluster-scoped kinds and kinds the same YAML defines as cluster-scoped, RBAC
        escalation visible in the objects, privileged pod templates. `judge` decides the rest
        with the cluster's discovery at plan time.
        """
        scopes = crd_scopes(objects)
        refusals: list[ObjectRefusal] = []
        for obj in objects:
            namespaced = _static_namespaced(obj, scopes)
            refusal = self._namespace_of(obj, namespaced, grant) or (
                None if grant.elevated else _elevation(obj, namespaced)
            )
            if refusal is not None:
                refusals.append(refusal)
        return _first(refusals)

    async def judge(
        self, plan: ApplyPlan, cluster: PolicyCluster, grant: PolicyGrant
    ) -> PlanVerdict:
        """Judge every object and hook of ``plan`` with the cluster's discovery.

        Objects whose keys are in ``plan.requested`` came from the request; the rest (and every
        hook) from the mesh's declaration. The verdict's adoption lists objects the apply engine
        may take over when they exist unowned: only with the request's adopt grant, and
        cluster-scoped ones only with the elevated grant too.
        """
        plan_scopes = crd_scopes(plan.objects)
        served: dict[tuple[str, str], bool | None] = {}

        async def namespaced_of(obj: KubeObject) -> bool | None:
            api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
            if (api_version, kind) not in served:
                resource = await cluster.resource_for(api_version, kind)
                served[(api_version, kind)] = None if resource is None else resource.namespaced
            found = served[(api_version, kind)]
            if found is None:
                found = _crd_namespaced(obj, plan_scopes)
            return found

        refusals: list[ObjectRefusal] = []
        release_refusal = self.namespace_refusal(
            plan.namespace, grant, subject=f"release {plan.namespace}/{plan.release}"
        )
        if release_refusal is not None:
            refusals.append(release_refusal)
        adoptable: set[str] = set()
        entries = [(obj, Origin.DECLARED) for obj in (hook.manifest for hook in plan.hooks)]
        entries += [
            (obj, Origin.REQUESTED if _key(obj) in plan.requested else Origin.DECLARED)
            for obj in plan.objects
        ]
        for obj, origin in entries:
            namespaced = await namespaced_of(obj)
            if namespaced is None and origin is Origin.REQUESTED:
                refusals.append(_unknown_kind(obj))
                continue
            if namespaced is None:  # left to the apply engine (KIND_NOT_INSTALLED)
                namespaced = bool((obj.get("metadata") or {}).get("namespace"))
            refusal = self._namespace_of(obj, namespaced, grant)
            if refusal is None and origin is Origin.REQUESTED and not grant.elevated:
                refusal = _elevation(obj, namespaced)
                if refusal is None:
                    refusal = await _cluster_role_escalation(obj, cluster)
            if refusal is not None:
                refusals.append(refusal)
            elif grant.adopt and (namespaced or grant.elevated):
                adoptable.add(_key(obj))
        return PlanVerdict(
            refusal=_first(refusals),
            adoption=Adoption(keys=frozenset(adoptable), requested=grant.adopt),
        )

    def _namespace_of(
        self, obj: KubeObject, namespaced: bool | None, grant: PolicyGrant
    ) -> ObjectRefusal | None:
        """Protected namespaces: an object in one, or the Namespace object of one."""
        if grant.protected_namespaces:
            return None
        metadata = obj.get("metadata") or {}
        namespace = metadata.get("namespace")
        if namespaced is not False and namespace in self.protected_namespaces:
            return self.namespace_refusal(str(namespace), grant, subject=_describe(obj))
        if _group_kind(obj) == ("", "Namespace") and metadata.get("name") in (
            self.protected_namespaces
        ):
            return self.namespace_refusal(str(metadata["name"]), grant, subject=_describe(obj))
        return None


def retired_parameter_message() -> str:
    """What a request still sending ``allow_cluster_scoped`` is told."""
    return (
        "is no longer accepted: a request cannot allow cluster-scoped or elevated objects; the "
        f"adapter's operator allows them with {ALLOW_ELEVATED_FLAG} (env "
        "MESHPLANE_ADAPTER_ALLOW_ELEVATED_OBJECTS); remove the parameter"
    )


def not_owned_detail(refs: Sequence[ObjectRef], adoption: Adoption) -> ErrorDetail:
    """The refusal to take over existing objects meshplane does not own (FAILED_PRECONDITION)."""
    shown = ", ".join(str(ref)[:_SHOWN] for ref in refs[:3])
    more = f" and {len(refs) - 3} more" if len(refs) > 3 else ""
    if adoption.requested:
        remedy = (
            "adopting a cluster-scoped object also needs the adapter's operator to allow "
            f"elevated objects ({ALLOW_ELEVATED_FLAG}); or delete or rename the object"
        )
    else:
        remedy = (
            f"to take it over, send parameters.{ADOPT_EXISTING}=true (meshplane then owns it and "
            "deletes it with the release); or delete or rename the object"
        )
    return ErrorDetail(
        code=FAILED_PRECONDITION,
        message=f"{shown}{more} already exists and is not managed by this release; "
        "meshplane never adopts objects silently",
        probable_cause="the object was created by someone else (kubectl, another tool), "
        "without app.kubernetes.io/managed-by=meshplane and a release label of this mesh",
        suggested_remediation=remedy,
    )


# -- elevation ------------------------------------------------------------------------------


def _elevation(obj: KubeObject, namespaced: bool | None) -> ObjectRefusal | None:
    """What in a request-supplied object needs ``--allow-elevated-objects``, if anything.

    ``namespaced`` None (admission: scope unknown without discovery) judges only what the
    object itself shows; a ClusterRole a RoleBinding names is judged at plan time
    (`_cluster_role_escalation`).
    """
    group_kind = _group_kind(obj)
    rule = _KIND_RULES.get(group_kind)
    if rule is not None or namespaced is False:
        reason = {
            Rule.CUSTOM_RESOURCE_DEFINITION: "defines a new API for the whole cluster",
            Rule.ADMISSION_CONTROL: "intercepts API requests in every namespace",
            Rule.CLUSTER_RBAC: "grants or binds permissions across the cluster",
            Rule.PRIORITY_CLASS: "changes scheduling priority for the whole cluster",
        }.get(rule or Rule.CLUSTER_SCOPED, "is cluster-scoped: it affects every namespace")
        return _elevated(obj, rule or Rule.CLUSTER_SCOPED, reason, cluster_scoped=True)
    if group_kind == (_RBAC, "Role"):
        found = _escalating_rules(obj.get("rules"))
        if found:
            return _elevated(obj, Rule.RBAC_ESCALATION, f"grants {found}")
    if group_kind == (_RBAC, "RoleBinding"):
        reason = _binding_problem(obj)
        if reason:
            return _elevated(obj, Rule.RBAC_ESCALATION, reason)
    reason = _privileged(obj)
    if reason:
        return _elevated(obj, Rule.PRIVILEGED_WORKLOAD, reason)
    return None


def _elevated(
    obj: KubeObject, rule: Rule, reason: str, *, cluster_scoped: bool = False
) -> ObjectRefusal:
    return ObjectRefusal(
        subject=_describe(obj, with_namespace=not cluster_scoped),
        rule=rule,
        reason=reason,
        remedy=f"request YAML may not do this unless the adapter's operator starts it with "
        f"{ALLOW_ELEVATED_FLAG}; or remove the object",
    )


def _binding_problem(binding: KubeObject) -> str:
    """Why a namespaced RoleBinding reaches beyond its namespace ('' when it does not)."""
    role_ref = _mapping(binding.get("roleRef"))
    role_kind, role_name = role_ref.get("kind"), str(role_ref.get("name", ""))
    if role_kind == "ClusterRole" and (
        role_name in _ESCALATING_CLUSTER_ROLES or role_name.startswith("system:")
    ):
        return f"binds ClusterRole {role_name[:_SHOWN]}, which escalates privileges"
    own = _mapping(binding.get("metadata")).get("namespace")
    for subject in _items(binding.get("subjects")):
        if not isinstance(subject, dict):
            return "has a subject that is not a mapping"
        kind, name = subject.get("kind"), str(subject.get("name", ""))[:_SHOWN]
        namespace = subject.get("namespace") or own
        if kind != "ServiceAccount":
            return f"binds {kind} {name}, an identity beyond the namespace"
        if own and namespace != own:
            return f"binds ServiceAccount {str(namespace)[:_SHOWN]}/{name} of another namespace"
    return ""


async def _cluster_role_escalation(obj: KubeObject, cluster: PolicyCluster) -> ObjectRefusal | None:
    """A RoleBinding of a ClusterRole: judge the ClusterRole's rules as the cluster has them."""
    if _group_kind(obj) != (_RBAC, "RoleBinding"):
        return None
    role_ref = _mapping(obj.get("roleRef"))
    if role_ref.get("kind") != "ClusterRole":
        return None
    name = str(role_ref.get("name", ""))
    role = await cluster.get(f"{_RBAC}/v1", "ClusterRole", name) if name else None
    if role is None:
        return _elevated(
            obj,
            Rule.RBAC_ESCALATION,
            f"binds ClusterRole {name[:_SHOWN]}, which does not exist, so what it grants "
            "cannot be judged",
        )
    if role.get("aggregationRule"):
        return _elevated(obj, Rule.RBAC_ESCALATION, f"binds aggregated ClusterRole {name[:_SHOWN]}")
    found = _escalating_rules(role.get("rules"))
    if found:
        return _elevated(
            obj, Rule.RBAC_ESCALATION, f"binds ClusterRole {name[:_SHOWN]}, which grants {found}"
        )
    return None


def _escalating_rules(rules: object) -> str:
    """The first escalating grant in RBAC ``rules`` ('' when none)."""
    if not isinstance(rules, list):
        return ""
    for rule in rules:
        if not isinstance(rule, dict):
            return "a rule that is not a mapping"
        verbs = {str(v) for v in _items(rule.get("verbs"))}
        risky = sorted(verbs & _ESCALATING_VERBS)
        if risky:
            return f"verb {risky[0]!r}"
        if "*" in {str(r) for r in _items(rule.get("resources"))}:
            return "every resource ('*')"
    return ""


def _privileged(obj: KubeObject) -> str:
    """What makes a pod template in ``obj`` privileged ('' when nothing does)."""
    for pod in _pod_specs(obj, 0):
        for field in ("hostPID", "hostNetwork", "hostIPC"):
            if pod.get(field) is True:
                return f"its pod template sets {field}"
        if _host_process(pod.get("securityContext")):
            return "its pod template runs Windows host processes"
        for volume in _items(pod.get("volumes")):
            if isinstance(volume, dict) and "hostPath" in volume:
                return f"its pod template mounts hostPath volume {str(volume.get('name'))[:40]}"
        for section in ("initContainers", "containers", "ephemeralContainers"):
            for container in _items(pod.get(section)):
                reason = _container_problem(container)
                if reason:
                    return f"its pod template's container {reason}"
    return ""


def _container_problem(container: object) -> str:
    if not isinstance(container, dict):
        return ""
    name = str(container.get("name", ""))[:40]
    context = container.get("securityContext")
    if isinstance(context, dict):
        if context.get("privileged") is True:
            return f"{name} is privileged"
        if _host_process(context):
            return f"{name} runs as a Windows host process"
        added = _items(_mapping(context.get("capabilities")).get("add"))
        beyond = sorted(
            {str(c).upper().removeprefix("CAP_") for c in added} - _BASELINE_CAPABILITIES
        )
        if beyond:
            return f"{name} adds capability {beyond[0][:40]}"
    for port in _items(container.get("ports")):
        if isinstance(port, dict) and port.get("hostPort"):
            return f"{name} binds hostPort {str(port.get('hostPort'))[:10]}"
    return ""


def _host_process(context: object) -> bool:
    options = context.get("windowsOptions") if isinstance(context, dict) else None
    return isinstance(options, dict) and options.get("hostProcess") is True


def _pod_specs(node: object, depth: int) -> Iterator[dict[str, Any]]:
    """Every pod spec inside an object (a mapping with a ``containers`` list), at any depth:
    Pods, workload templates, and custom resources that embed pod templates."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _pod_specs(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                yield from _pod_specs(item, depth + 1)


# -- small pieces ---------------------------------------------------------------------------


def _items(value: object) -> list[Any]:
    """A list field of request YAML as a list (anything else, as the API would reject it, as
    nothing to judge here): hostile shapes never raise."""
    return value if isinstance(value, list) else []


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _unknown_kind(obj: KubeObject) -> ObjectRefusal:
    api_version = str(obj.get("apiVersion", ""))[:_SHOWN]
    kind = str(obj.get("kind", ""))[:_SHOWN]
    return ObjectRefusal(
        subject=_describe(obj),
        rule=Rule.UNKNOWN_KIND,
        reason=f"the cluster serves no {kind} in {api_version}, so its scope cannot be judged",
        remedy="check apiVersion and kind, or install the CRD that defines it first",
        code=FAILED_PRECONDITION,
    )


def _protected_remedy() -> str:
    return (
        "choose another namespace; an operator may allow protected namespaces with "
        f"{ALLOW_PROTECTED_FLAG} (the list is set with {PROTECTED_NAMESPACES_FLAG})"
    )


def _first(refusals: Sequence[ObjectRefusal]) -> ObjectRefusal | None:
    if not refusals:
        return None
    return dataclasses.replace(refusals[0], others=len(refusals) - 1)


def _group_kind(obj: KubeObject) -> tuple[str, str]:
    return str(obj.get("apiVersion", "")).rpartition("/")[0], str(obj.get("kind", ""))


def _static_namespaced(obj: KubeObject, scopes: Mapping[tuple[str, str], bool]) -> bool | None:
    """Scope known without discovery: built-in cluster-scoped kinds, CRDs of the same YAML."""
    group, kind = _group_kind(obj)
    if (group, kind) in scopes:
        return not scopes[(group, kind)]
    if ("." not in group or group.endswith(".k8s.io")) and kind in CLUSTER_SCOPED_KINDS:
        return False
    return None


def _crd_namespaced(obj: KubeObject, scopes: Mapping[tuple[str, str], bool]) -> bool | None:
    found = scopes.get(_group_kind(obj))
    return None if found is None else not found


def _key(obj: KubeObject) -> str:
    try:
        return ObjectRef.from_manifest(obj).key
    except ValueError:
        return ""


def _describe(obj: KubeObject, *, with_namespace: bool = True) -> str:
    """``Kind namespace/name`` (a cluster-scoped object's stray namespace is left out)."""
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    namespace = namespace if with_namespace else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    where = f"{str(namespace)[:_SHOWN]}/" if namespace else ""
    return f"{str(obj.get('kind', '?'))[:_SHOWN]} {where}{str(name)[:_SHOWN]}"


def protected_namespaces_from(names: Iterable[str]) -> frozenset[str]:
    """The defaults plus the operator's additions."""
    return DEFAULT_PROTECTED_NAMESPACES | {n.strip() for n in names if n.strip()}
