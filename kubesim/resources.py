"""Resource types the server knows: the built-in table and the registry CRDs add to."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypedDict, Unpack

from kubesim.cr_schemas import CrSchema
from kubesim.errors import ApiError

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SUB_VERBS = ("get", "patch", "update")
READ_ONLY_SUBRESOURCES = frozenset({"log"})
CREATE_ONLY_SUBRESOURCES = frozenset({"token"})
_SUB_KINDS = {
    "scale": ("autoscaling", "v1", "Scale"),
    "token": ("authentication.k8s.io", "v1", "TokenRequest"),
}


def subresource_verbs(sub: str) -> list[str]:
    if sub in READ_ONLY_SUBRESOURCES:
        return ["get"]
    if sub in CREATE_ONLY_SUBRESOURCES:
        return ["create"]
    return list(SUB_VERBS)


@dataclass(frozen=True, kw_only=True)
class ResourceType:
    """One served resource: where it lives in the URL space and how it behaves."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    # metadata.generation is bumped on spec changes (workloads, CRDs and custom resources).
    tracks_generation: bool = False
    # Custom resources: no strategic merge patch, no built-in defaulting.
    custom: bool = False
    # Names validated as DNS-1123 labels (namespaces, services) rather than subdomains.
    label_names: bool = False
    # RBAC objects allow any path segment as a name (for example `system:controller`).
    path_segment_names: bool = False
    # Versions that share this type's storage, the first one preferred.
    served_versions: tuple[str, ...] = field(default=())
    # Custom resources: the served version's structural schema (compiled on first use).
    schema: CrSchema | None = field(default=None, compare=False, repr=False)
    # Reviews (TokenReview, SubjectAccessReview, ...): create only, answered and never stored.
    review: bool = False

    @property
    def verbs(self) -> list[str]:
        return ["create"] if self.review else list(ALL_VERBS)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of every version of one group/plural share one store."""
        return (self.group, self.plural)

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def aggregated_entry(self) -> dict[str, object]:
        """This type as an aggregated discovery APIResourceDiscovery (apidiscovery.k8s.io/v2)."""
        kind = {"group": self.group, "version": self.version, "kind": self.kind}
        entry: dict[str, object] = {
            "resource": self.plural,
            "responseKind": kind,
            "scope": "Namespaced" if self.namespaced else "Cluster",
            "singularResource": self.singular,
            "verbs": self.verbs,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        subresources = []
        for sub in self.subresources:
            other = _SUB_KINDS.get(sub)
            sub_kind = {"group": other[0], "version": other[1], "kind": other[2]} if other else kind
            subresources.append(
                {"subresource": sub, "responseKind": sub_kind, "verbs": subresource_verbs(sub)}
            )
        if subresources:
            entry["subresources"] = subresources
        return entry

    def discovery_entries(self) -> list[dict[str, object]]:
        """The APIResource entries of this type and its subresources."""
        entry: dict[str, object] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        entries = [entry]
        for sub in self.subresources:
            other = _SUB_KINDS.get(sub)
            sub_entry: dict[str, object] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": other[2] if other else self.kind,
                "verbs": subresource_verbs(sub),
            }
            if other:
                sub_entry["group"] = other[0]
                sub_entry["version"] = other[1]
            entries.append(sub_entry)
        return entries


class _Traits(TypedDict, total=False):
    """What a row of `BUILTIN_TYPES` may set beyond its group, version, plural and kind."""

    singular: str
    namespaced: bool
    short: tuple[str, ...]
    sub: tuple[str, ...]
    gen: bool
    label_names: bool
    path_names: bool
    categories: tuple[str, ...]
    review: bool


def _t(group_version: str, plural: str, kind: str, **traits: Unpack[_Traits]) -> ResourceType:
    group, _, version = group_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=traits.get("singular") or kind.lower(),
        kind=kind,
        namespaced=traits.get("namespaced", True),
        short_names=traits.get("short", ()),
        subresources=traits.get("sub", ()),
        tracks_generation=traits.get("gen", False),
        label_names=traits.get("label_names", False),
        path_segment_names=traits.get("path_names", False),
        categories=traits.get("categories", ()),
        review=traits.get("review", False),
    )


_ALL = ("all",)
RBAC = "rbac.authorization.k8s.io/v1"
AUTHN = "authentication.k8s.io/v1"
AUTHZ = "authorization.k8s.io/v1"
ADMISSION = "admissionregistration.k8s.io/v1"

BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _t(
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        sub=("status", "finalize"),
        label_names=True,
    ),
    _t("v1", "nodes", "Node", namespaced=False, short=("no",), sub=("status",)),
    _t("v1", "configmaps", "ConfigMap", short=("cm",)),
    _t("v1", "secrets", "Secret"),
    _t(
        "v1",
        "services",
        "Service",
        short=("svc",),
        sub=("status",),
        label_names=True,
        categories=_ALL,
    ),
    _t("v1", "serviceaccounts", "ServiceAccount", short=("sa",), sub=("token",)),
    _t("v1", "pods", "Pod", short=("po",), sub=("status", "log"), gen=True, categories=_ALL),
    _t("v1", "endpoints", "Endpoints", singular="endpoints", short=("ep",)),
    _t("v1", "events", "Event", short=("ev",)),
    _t("v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), sub=("status",)),
    _t("v1", "limitranges", "LimitRange", short=("limits",)),
    _t("v1", "resourcequotas", "ResourceQuota", short=("quota",), sub=("status",)),
    _t(
        "apps/v1",
        "deployments",
        "Deployment",
        short=("deploy",),
        sub=("status", "scale"),
        gen=True,
        categories=_ALL,
    ),
    _t(
        "apps/v1",
        "statefulsets",
        "StatefulSet",
        short=("sts",),
        sub=("status", "scale"),
        gen=True,
        categories=_ALL,
    ),
    _t(
        "apps/v1",
        "daemonsets",
        "DaemonSet",
        short=("ds",),
        sub=("status",),
        gen=True,
        categories=_ALL,
    ),
    _t(
        "apps/v1",
        "replicasets",
        "ReplicaSet",
        short=("rs",),
        sub=("status", "scale"),
        gen=True,
        categories=_ALL,
    ),
    _t("apps/v1", "controllerrevisions", "ControllerRevision"),
    _t("batch/v1", "jobs", "Job", sub=("status",), gen=True, categories=_ALL),
    _t(
        "batch/v1", "cronjobs", "CronJob", short=("cj",), sub=("status",), gen=True, categories=_ALL
    ),
    _t(AUTHN, "tokenreviews", "TokenReview", namespaced=False, review=True),
    _t(AUTHN, "selfsubjectreviews", "SelfSubjectReview", namespaced=False, review=True),
    _t(AUTHZ, "subjectaccessreviews", "SubjectAccessReview", namespaced=False, review=True),
    _t(AUTHZ, "selfsubjectaccessreviews", "SelfSubjectAccessReview", namespaced=False, review=True),
    _t(AUTHZ, "localsubjectaccessreviews", "LocalSubjectAccessReview", review=True),
    _t(RBAC, "roles", "Role", path_names=True),
    _t(RBAC, "rolebindings", "RoleBinding", path_names=True),
    _t(RBAC, "clusterroles", "ClusterRole", namespaced=False, path_names=True),
    _t(RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False, path_names=True),
    _t(
        ADMISSION,
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        namespaced=False,
        gen=True,
    ),
    _t(
        ADMISSION,
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        namespaced=False,
        gen=True,
    ),
    _t(
        ADMISSION,
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        namespaced=False,
        sub=("status",),
        gen=True,
    ),
    _t(
        ADMISSION,
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        namespaced=False,
        gen=True,
    ),
    _t(
        "apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        sub=("status",),
        gen=True,
        categories=("api-extensions",),
    ),
    _t(
        "policy/v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        short=("pdb",),
        sub=("status",),
        gen=True,
    ),
    _t(
        "autoscaling/v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        sub=("status",),
        categories=_ALL,
    ),
    _t("networking.k8s.io/v1", "networkpolicies", "NetworkPolicy", short=("netpol",), gen=True),
    _t("networking.k8s.io/v1", "ingresses", "Ingress", short=("ing",), sub=("status",), gen=True),
    _t("networking.k8s.io/v1", "ingressclasses", "IngressClass", namespaced=False),
    _t("discovery.k8s.io/v1", "endpointslices", "EndpointSlice"),
    _t("coordination.k8s.io/v1", "leases", "Lease"),
    _t("scheduling.k8s.io/v1", "priorityclasses", "PriorityClass", namespaced=False, short=("pc",)),
    _t("storage.k8s.io/v1", "storageclasses", "StorageClass", namespaced=False, short=("sc",)),
)

CRD_GROUP = "apiextensions.k8s.io"

_KUBE_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")
_STABILITY = {"alpha": 1, "beta": 2, None: 3}


def version_priority(version: str) -> tuple[int, int, int, int, str]:
    """Sort key of the apiserver's version priority: the most preferred version sorts first.

    Names like ``v2``/``v1beta1``/``v1alpha2`` come first: GA before beta before alpha, then the
    higher major version, then the higher beta/alpha number; other names follow alphabetically
    (``v10, v2, v1, v11beta2, v10beta3, v3beta1, v12alpha1, v11alpha2, foo1, foo10``).
    """
    m = _KUBE_VERSION.fullmatch(version)
    if m is None:
        return (1, 0, 0, 0, version)
    return (0, -_STABILITY[m.group(2)], -int(m.group(1)), -int(m.group(3) or 0), "")


class ResourceRegistry:
    """Every served group/version/resource; CRDs add and remove entries at run time."""

    def __init__(self, types: Iterable[ResourceType] = BUILTIN_TYPES) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        # group -> versions served (discovery orders them by `version_priority`)
        self._group_versions: dict[str, list[str]] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        # storage key -> the first type registered for it (what controllers write through)
        self._by_storage: dict[tuple[str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_path[(rt.group, rt.version, rt.plural)] = rt
        self._by_storage.setdefault(rt.storage_key, rt)
        self._by_kind[(rt.api_version, rt.kind)] = rt
        versions = self._group_versions.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    def remove(self, rt: ResourceType) -> None:
        self._by_path.pop((rt.group, rt.version, rt.plural), None)
        if self._by_storage.get(rt.storage_key) is rt:
            del self._by_storage[rt.storage_key]
            for other in self._by_path.values():
                if other.storage_key == rt.storage_key:
                    self._by_storage[rt.storage_key] = other
                    break
        self._by_kind.pop((rt.api_version, rt.kind), None)
        if not any(t.group == rt.group and t.version == rt.version for t in self._by_path.values()):
            versions = self._group_versions.get(rt.group, [])
            if rt.version in versions:
                versions.remove(rt.version)
            if not versions:
                self._group_versions.pop(rt.group, None)

    def set_crd_types(self, crd_name: str, types: list[ResourceType]) -> None:
        """Replace what one CRD serves."""
        for rt in self._crd_types.pop(crd_name, []):
            self.remove(rt)
        for rt in types:
            self.add(rt)
        if types:
            self._crd_types[crd_name] = types

    def crd_types(self, crd_name: str) -> list[ResourceType]:
        return list(self._crd_types.get(crd_name, []))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        rt = self._by_path.get((group, version, plural))
        if rt is None:
            raise ApiError.not_found_path()
        return rt

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def for_storage(self, storage_key: tuple[str, str]) -> ResourceType | None:
        return self._by_storage.get(storage_key)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions preferred first) for every named group, core excluded.

        As the apiserver does (for CRD groups across every CRD of the group, whatever order
        the CRDs list them in), versions are ordered by `version_priority`.
        """
        return [(g, sorted(v, key=version_priority)) for g, v in self._group_versions.items() if g]

    def has_group_version(self, group: str, version: str) -> bool:
        return version in self._group_versions.get(group, [])

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._by_path.values() if t.group == group and t.version == version]

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(list(self._by_path.values()))

    def storage_keys(self) -> set[tuple[str, str]]:
        return {t.storage_key for t in self._by_path.values()}
