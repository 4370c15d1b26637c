"""Least-privilege RBAC for one adapter, derived from what its operations put in a cluster.

An adapter needs exactly the (API group, resource, verb) triples its apply engine and checks use
on the kinds its charts, manifests and builders produce, plus what the kit itself touches
(inventory Secrets, release Namespaces, Pods when explaining a stuck workload). Server-side
apply is a PATCH, and when it creates the object the API server also authorizes ``create``
(k8s.io/apiserver endpoints/handlers/patch.go), so applied kinds need both.

Kubernetes refuses to let anyone create a Role or ClusterRole granting permissions the creator
does not hold, or bind a role whose permissions it does not hold (RBAC escalation prevention).
So the rules of every rendered Role/ClusterRole are part of the adapter's role too; every
binding gets ``bind`` on the one role name it refers to, and an aggregated ClusterRole (whose
rules the cluster fills in) needs ``escalate``. ``bind`` is needed even for a role the charts
render: without it the API server reads the role to compare its rules with the applier's, and
the apply engine applies roles and their bindings in one tier, concurrently, so the role may not
exist yet (the real API server then answers 404 for the binding). It grants nothing the adapter
does not already hold through the rendered role's rules.

`derive` renders every chart version the repository offers, for every combination of the
operations' enumerated parameters, and ignores `when` conditions (the union is what the adapter
may ever apply). Reads made by values builders, conditions and validate checks are recorded
through a `ClusterReader` that answers every question with one sample object.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from adapters.kit.declare import sources
from adapters.kit.declare.checks import CheckContext
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import OperationSpec, Ownership
from adapters.kit.declare.sources import PlanContext
from adapters.kit.model.objects import KubeObject
from adapters.kit.plan.chart_repository import ChartRepository
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.plan.rendering import render_chart

__all__ = [
    "BUILTIN_RESOURCES",
    "EXPLAINED_BY_PODS",
    "Permission",
    "RbacError",
    "Requirements",
    "UrlPermission",
    "cluster_role",
    "derive",
    "derive_for_mesh",
    "expand_rule",
    "register",
    "rules_cover",
    "unused_permissions",
]

log = structlog.get_logger(__name__)

RBAC_GROUP = "rbac.authorization.k8s.io"
OWNED_VERBS: tuple[str, ...] = ("create", "delete", "get", "list", "patch")
"""Objects a release owns: applied (patch+create), listed by release label on upgrade, read
while waiting and for status, deleted on prune and uninstall."""
FIELDS_VERBS: tuple[str, ...] = ("create", "get", "patch")
"""Objects a fields-only release touches: read first, then applied (possibly creating)."""
HOOK_VERBS: tuple[str, ...] = ("create", "delete", "get", "patch")
"""Helm hooks: deleted before re-creation, applied, waited on, deleted by policy."""
EXPLAINED_BY_PODS: frozenset[str] = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job"})
"""Kinds whose readiness wait lists their Pods to say why they are stuck."""

# (group, kind) -> resource name, as `kubectl api-resources` lists them.
BUILTIN_RESOURCES: dict[tuple[str, str], str] = {
    ("", "ConfigMap"): "configmaps",
    ("", "Endpoints"): "endpoints",
    ("", "Event"): "events",
    ("", "LimitRange"): "limitranges",
    ("", "Namespace"): "namespaces",
    ("", "Node"): "nodes",
    ("", "PersistentVolume"): "persistentvolumes",
    ("", "PersistentVolumeClaim"): "persistentvolumeclaims",
    ("", "Pod"): "pods",
    ("", "PodTemplate"): "podtemplates",
    ("", "ReplicationController"): "replicationcontrollers",
    ("", "ResourceQuota"): "resourcequotas",
    ("", "Secret"): "secrets",
    ("", "Service"): "services",
    ("", "ServiceAccount"): "serviceaccounts",
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ): "mutatingwebhookconfigurations",
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"): "validatingadmissionpolicies",
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ): "validatingadmissionpolicybindings",
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ): "validatingwebhookconfigurations",
    ("apiextensions.k8s.io", "CustomResourceDefinition"): "customresourcedefinitions",
    ("apiregistration.k8s.io", "APIService"): "apiservices",
    ("apps", "ControllerRevision"): "controllerrevisions",
    ("apps", "DaemonSet"): "daemonsets",
    ("apps", "Deployment"): "deployments",
    ("apps", "ReplicaSet"): "replicasets",
    ("apps", "StatefulSet"): "statefulsets",
    ("autoscaling", "HorizontalPodAutoscaler"): "horizontalpodautoscalers",
    ("batch", "CronJob"): "cronjobs",
    ("batch", "Job"): "jobs",
    ("coordination.k8s.io", "Lease"): "leases",
    ("discovery.k8s.io", "EndpointSlice"): "endpointslices",
    ("events.k8s.io", "Event"): "events",
    ("networking.k8s.io", "Ingress"): "ingresses",
    ("networking.k8s.io", "IngressClass"): "ingressclasses",
    ("networking.k8s.io", "NetworkPolicy"): "networkpolicies",
    ("policy", "PodDisruptionBudget"): "poddisruptionbudgets",
    (RBAC_GROUP, "ClusterRole"): "clusterroles",
    (RBAC_GROUP, "ClusterRoleBinding"): "clusterrolebindings",
    (RBAC_GROUP, "Role"): "roles",
    (RBAC_GROUP, "RoleBinding"): "rolebindings",
    ("scheduling.k8s.io", "PriorityClass"): "priorityclasses",
    ("storage.k8s.io", "StorageClass"): "storageclasses",
}


class RbacError(RuntimeError):
    """The needed permissions cannot be worked out (a kind with no known resource name)."""


@dataclass(frozen=True, kw_only=True, order=True)
class Permission:
    """One verb on one resource of one API group; ``name`` limits it to one object."""

    group: str
    resource: str
    verb: str
    name: str = ""


@dataclass(frozen=True, kw_only=True, order=True)
class UrlPermission:
    """One verb on one non-resource URL (ClusterRoles only, e.g. ``/metrics``)."""

    url: str
    verb: str


def _strings(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []


def expand_rule(rule: Mapping[str, Any]) -> tuple[set[Permission], set[UrlPermission]]:
    """A PolicyRule as the single permissions it grants (wildcards stay ``*``)."""
    verbs = _strings(rule.get("verbs"))
    urls = _strings(rule.get("nonResourceURLs"))
    url_permissions = {UrlPermission(url=url, verb=verb) for url in urls for verb in verbs}
    names = _strings(rule.get("resourceNames")) or [""]
    permissions = {
        Permission(group=group, resource=resource, verb=verb, name=name)
        for group in _strings(rule.get("apiGroups"))
        for resource in _strings(rule.get("resources"))
        for verb in verbs
        for name in names
    }
    return permissions, url_permissions


def _matches(granted: str, wanted: str) -> bool:
    return granted in ("*", wanted)


def _resource_matches(granted: str, wanted: str) -> bool:
    if granted in ("*", wanted):
        return True
    # "*/scale" grants the scale subresource of every resource; "pods/*" every pods subresource.
    g_base, _, g_sub = granted.partition("/")
    w_base, _, w_sub = wanted.partition("/")
    if not g_sub or not w_sub:
        return False
    return (g_base in ("*", w_base)) and (g_sub in ("*", w_sub))


def _covers(granted: Permission, wanted: Permission) -> bool:
    """Whether ``granted`` allows everything ``wanted`` asks for (RBAC's rule matching)."""
    return (
        _matches(granted.group, wanted.group)
        and _resource_matches(granted.resource, wanted.resource)
        and _matches(granted.verb, wanted.verb)
        and granted.name in ("", wanted.name)
    )


def _url_covers(granted: UrlPermission, wanted: UrlPermission) -> bool:
    if not _matches(granted.verb, wanted.verb):
        return False
    if granted.url.endswith("*"):
        return wanted.url.startswith(granted.url[:-1])
    return granted.url == wanted.url


def rules_cover(rules: Sequence[Mapping[str, Any]], wanted: Permission | UrlPermission) -> bool:
    """Whether any of ``rules`` grants ``wanted``."""
    for rule in rules:
        permissions, urls = expand_rule(rule)
        if isinstance(wanted, Permission):
            if any(_covers(granted, wanted) for granted in permissions):
                return True
        elif any(_url_covers(granted, wanted) for granted in urls):
            return True
    return False


@dataclass(frozen=True, kw_only=True)
class Requirements:
    """Everything an adapter needs, each permission with one reason it is needed."""

    mesh: str
    permissions: Mapping[Permission, str]
    urls: Mapping[UrlPermission, str] = field(default_factory=dict)
    versions: tuple[str, ...] = ()
    """Mesh versions whose charts were rendered."""

    def minimal(self) -> tuple[set[Permission], set[UrlPermission]]:
        """The permissions without those another (wildcard) permission already grants."""
        every = set(self.permissions)
        kept = {
            p
            for p in every
            if not any(o != p and _covers(o, p) and not _covers(p, o) for o in every)
        }
        urls = set(self.urls)
        kept_urls = {
            u
            for u in urls
            if not any(o != u and _url_covers(o, u) and not _url_covers(u, o) for o in urls)
        }
        return kept, kept_urls

    def rules(self) -> list[dict[str, Any]]:
        """The PolicyRules granting exactly `minimal`, merged and in a stable order."""
        permissions, urls = self.minimal()
        verbs_of: dict[tuple[str, str, str], set[str]] = {}
        for p in permissions:
            verbs_of.setdefault((p.group, p.resource, p.name), set()).add(p.verb)
        resources_of: dict[tuple[str, tuple[str, ...], str], list[str]] = {}
        for (group, resource, name), verb_set in verbs_of.items():
            resources_of.setdefault((group, tuple(sorted(verb_set)), name), []).append(resource)
        # Named grants with the same resources and verbs share one rule (its resourceNames).
        names_of: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[str]] = {}
        for (group, verbs, name), resources in resources_of.items():
            names_of.setdefault((group, verbs, tuple(sorted(resources))), []).append(name)
        rules: list[dict[str, Any]] = []
        for (group, verbs, plurals), names in sorted(names_of.items()):
            for named in ([n for n in names if not n], [n for n in names if n]):
                if not named:
                    continue
                rule: dict[str, Any] = {
                    "apiGroups": [group],
                    "resources": list(plurals),
                    "verbs": list(verbs),
                }
                if named[0]:
                    rule["resourceNames"] = sorted(named)
                rules.append(rule)
        url_verbs: dict[str, set[str]] = {}
        for u in urls:
            url_verbs.setdefault(u.url, set()).add(u.verb)
        by_verbs: dict[tuple[str, ...], list[str]] = {}
        for url, url_verb_set in url_verbs.items():
            by_verbs.setdefault(tuple(sorted(url_verb_set)), []).append(url)
        for url_verbs_sorted, found in sorted(by_verbs.items()):
            rules.append({"nonResourceURLs": sorted(found), "verbs": list(url_verbs_sorted)})
        return rules


def unused_permissions(
    rules: Sequence[Mapping[str, Any]], needed: Requirements
) -> list[Permission | UrlPermission]:
    """Permissions ``rules`` grant that nothing in ``needed`` asks for (should be empty)."""
    wanted, wanted_urls = needed.minimal()
    unused: list[Permission | UrlPermission] = []
    for rule in rules:
        permissions, urls = expand_rule(rule)
        unused.extend(sorted(p for p in permissions if p not in wanted))
        unused.extend(sorted(u for u in urls if u not in wanted_urls))
    return unused


def cluster_role(requirements: Requirements, *, name: str = "") -> KubeObject:
    """The ClusterRole granting ``requirements`` (what `meshplane rbac MESH` prints)."""
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name or f"meshplane-adapter-{requirements.mesh}",
            "labels": {
                "app.kubernetes.io/part-of": "meshplane",
                "meshplane.io/adapter": requirements.mesh,
            },
        },
        "rules": requirements.rules(),
    }


# -- collecting ------------------------------------------------------------------------------


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class _Collector:
    """Kind-level needs, resolved to resources once every CRD has been seen."""

    def __init__(self) -> None:
        self.kind_verbs: dict[tuple[str, str, str], str] = {}
        self.crds: dict[tuple[str, str], str] = {}
        self.permissions: dict[Permission, str] = {}
        self.urls: dict[UrlPermission, str] = {}
        self.rendered_roles: set[tuple[str, str]] = set()
        self.bindings: list[tuple[str, str, str]] = []

    def need(self, api_version: str, kind: str, verbs: Iterable[str], why: str) -> None:
        group = _group_of(api_version)
        for verb in verbs:
            self.kind_verbs.setdefault((group, kind, verb), why)

    def grant(self, permission: Permission, why: str) -> None:
        self.permissions.setdefault(permission, why)

    def objects(self, objects: Iterable[KubeObject], verbs: Sequence[str], why: str) -> None:
        for obj in objects:
            api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
            name = str((obj.get("metadata") or {}).get("name", ""))
            reason = f"{why}: {kind} {name}"
            self.need(api_version, kind, verbs, reason)
            if kind in EXPLAINED_BY_PODS:
                self.need("v1", "Pod", ("list",), f"{reason} (why its pods are not ready)")
            if kind == "CustomResourceDefinition" and "delete" in verbs:
                self._custom_resources_counted(obj, reason)
            self._inspect(obj, reason)

    def _custom_resources_counted(self, crd: KubeObject, reason: str) -> None:
        """Purging a release's CRDs first lists their custom resources in every namespace."""
        spec = crd.get("spec") or {}
        kind = str((spec.get("names") or {}).get("kind", ""))
        if spec.get("group") and kind:
            self.kind_verbs.setdefault(
                (str(spec["group"]), kind, "list"),
                f"{reason} (uninstall counts its custom resources before purging it)",
            )

    def _inspect(self, obj: KubeObject, reason: str) -> None:
        kind = str(obj.get("kind", ""))
        if kind == "CustomResourceDefinition":
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            if spec.get("group") and names.get("kind") and names.get("plural"):
                key = (str(spec["group"]), str(names["kind"]))
                self.crds[key] = str(names["plural"])
        elif _group_of(str(obj.get("apiVersion", ""))) == RBAC_GROUP:
            name = str((obj.get("metadata") or {}).get("name", ""))
            if kind in ("ClusterRole", "Role"):
                self.rendered_roles.add((kind, name))
                held = f"{reason} grants it (a role's creator must hold what it grants)"
                for rule in obj.get("rules") or []:
                    permissions, urls = expand_rule(rule)
                    for permission in permissions:
                        self.grant(permission, held)
                    for url in urls:
                        self.urls.setdefault(url, held)
                if obj.get("aggregationRule"):
                    self.grant(
                        Permission(group=RBAC_GROUP, resource="clusterroles", verb="escalate"),
                        f"{reason} is aggregated: its rules are not known in advance",
                    )
            elif kind in ("ClusterRoleBinding", "RoleBinding"):
                ref = obj.get("roleRef") or {}
                self.bindings.append((str(ref.get("kind", "")), str(ref.get("name", "")), reason))

    def finish(self, mesh: str, versions: Sequence[str]) -> Requirements:
        unknown: list[str] = []
        for (group, kind, verb), why in self.kind_verbs.items():
            plural = BUILTIN_RESOURCES.get((group, kind)) or self.crds.get((group, kind))
            if plural is None:
                unknown.append(f"{kind}.{group or 'core'} ({why})")
                continue
            self.grant(Permission(group=group, resource=plural, verb=verb), why)
        if unknown:
            raise RbacError(
                "no resource name known for "
                + "; ".join(sorted(set(unknown)))
                + ": add the built-in kind to BUILTIN_RESOURCES, or render its CRD"
            )
        for role_kind, role_name, why in self.bindings:
            resource = "clusterroles" if role_kind == "ClusterRole" else "roles"
            rendered = (role_kind, role_name) in self.rendered_roles
            self.grant(
                Permission(group=RBAC_GROUP, resource=resource, verb="bind", name=role_name),
                f"{why} binds {role_kind} {role_name}"
                + (
                    " (applied beside it: without bind the API server must read the role, "
                    "which may not exist yet)"
                    if rendered
                    else ", which the charts do not render"
                ),
            )
        return Requirements(
            mesh=mesh,
            permissions=dict(self.permissions),
            urls=dict(self.urls),
            versions=tuple(versions),
        )


class _RecordingReader:
    """A `ClusterReader` that records reads and answers each with one sample object, so
    builders and checks walk the paths they take on a populated cluster."""

    def __init__(self, collector: _Collector, why: str) -> None:
        self._collector = collector
        self.why = why

    @staticmethod
    def _sample(api_version: str, kind: str, name: str, namespace: str | None) -> KubeObject:
        metadata: dict[str, Any] = {"name": name, "labels": {}, "annotations": {}}
        if namespace:
            metadata["namespace"] = namespace
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": metadata,
            "spec": {},
            "status": {},
        }

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        self._collector.need(api_version, kind, ("get",), f"{self.why} reads {kind} {name}")
        return self._sample(api_version, kind, name, namespace)

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        self._collector.need(api_version, kind, ("list",), f"{self.why} lists {kind}")
        return [self._sample(api_version, kind, f"sample-{kind.lower()}", namespace or "sample")]

    async def has_kind(self, api_version: str, kind: str) -> bool:
        return True  # discovery: readable by every authenticated user (system:discovery)


def _parameter_sets(spec: OperationSpec) -> list[dict[str, str]]:
    """Every combination of the parameters that list their allowed values; others default."""
    base = {p.name: p.default for p in spec.parameters if p.default}
    enumerated = [p for p in spec.parameters if p.allowed]
    combos: list[dict[str, str]] = []
    for values in itertools.product(*(p.allowed for p in enumerated)):
        chosen = dict(base)
        chosen.update({p.name: v for p, v in zip(enumerated, values, strict=True)})
        combos.append(chosen)
    return combos or [base]


class _Renders:
    """Renders each (chart, version, release, namespace, values) once."""

    def __init__(self, charts: ChartRepository) -> None:
        self._charts = charts
        self._done: dict[str, tuple[list[KubeObject], list[KubeObject]]] = {}

    async def render(
        self, chart: str, version: str, release: str, namespace: str, values: Mapping[str, Any]
    ) -> tuple[list[KubeObject], list[KubeObject]]:
        key = json.dumps([chart, version, release, namespace, values], sort_keys=True)
        if key not in self._done:
            entry = await self._charts.resolve(chart, version)
            archive = await self._charts.fetch(entry)
            rendered = await render_chart(
                archive, release_name=release, namespace=namespace, values=values
            )
            self._done[key] = (list(rendered.objects), [h.object for h in rendered.hooks])
        return self._done[key]


async def _operation(
    declaration: MeshDeclaration,
    spec: OperationSpec,
    versions: Sequence[str],
    renders: _Renders,
    manifests: ManifestLibrary,
    collector: _Collector,
) -> None:
    verbs = FIELDS_VERBS if spec.ownership is Ownership.FIELDS else OWNED_VERBS
    if spec.custom:
        # A custom body naming unknown custom kinds makes planning read CRD scopes; the kinds
        # of the body itself cannot be known in advance (the role limits what it may apply).
        collector.need(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            ("list",),
            f"{spec.id}: scope of custom kinds",
        )
        return
    applicable = [v for v in versions if not spec.mesh_versions or v in spec.mesh_versions]
    for parameters, version in itertools.product(_parameter_sets(spec), applicable):
        why = f"{spec.id} {version} {json.dumps(parameters, sort_keys=True)}"
        reader = _RecordingReader(collector, why)
        if spec.check is not None:
            await spec.check(
                CheckContext(
                    mesh=declaration.mesh,
                    namespace=spec.default_namespace,
                    parameters=parameters,
                    cluster=reader,
                )
            )
        for delete in (False, True):
            if delete and not spec.supports_delete:
                continue
            ctx = PlanContext(
                mesh=declaration.mesh,
                operation=spec.id,
                namespace=spec.default_namespace,
                mesh_version=version,
                parameters=parameters,
                delete=delete,
                cluster=reader,
            )
            await _sources(spec, ctx, renders, manifests, collector, verbs, why)


async def _sources(
    spec: OperationSpec,
    ctx: PlanContext,
    renders: _Renders,
    manifests: ManifestLibrary,
    collector: _Collector,
    verbs: Sequence[str],
    why: str,
) -> None:
    for source in spec.sources:
        if source.when is not None:
            await source.when(ctx)  # records its reads; the objects count either way
        if isinstance(source, sources.ChartSource):
            values = dict(await source.values(ctx)) if source.values is not None else {}
            objects, hooks = await renders.render(
                source.chart,
                ctx.mesh_version,
                source.release,
                source.namespace or ctx.namespace,
                values,
            )
            label = f"{why} chart {source.chart}"
            collector.objects(objects, verbs, label)
            collector.objects(hooks, HOOK_VERBS, f"{label} (hook)")
        elif isinstance(source, sources.ManifestSource):
            loaded = await manifests.load(source, ctx.mesh_version)
            collector.objects(loaded, verbs, f"{why} manifest {source.file}")
        else:
            built = await source.build(ctx)
            collector.objects(built, verbs, f"{why} built")


async def derive(
    declaration: MeshDeclaration,
    *,
    charts: ChartRepository,
    manifests: ManifestLibrary,
    install_chart: str,
    versions: Sequence[str] | None = None,
) -> Requirements:
    """What ``declaration``'s adapter needs, over ``versions`` (default: every version of
    ``install_chart`` in the repository)."""
    chosen = list(versions) if versions is not None else await charts.versions(install_chart)
    collector = _Collector()
    # The kit's own needs, whatever the mesh applies.
    collector.need("v1", "Secret", OWNED_VERBS, "release inventory (meshplane-release-*)")
    collector.need("v1", "Namespace", FIELDS_VERBS, "release namespace created when missing")
    if declaration.injection_label is not None or declaration.injection_annotation is not None:
        collector.need("v1", "Namespace", ("list",), "mesh status: injection namespaces")
    renders = _Renders(charts)
    for spec in declaration.operations:
        await _operation(declaration, spec, chosen, renders, manifests, collector)
    requirements = collector.finish(declaration.mesh, chosen)
    log.info(
        "rbac derived",
        mesh=declaration.mesh,
        versions=chosen,
        permissions=len(requirements.permissions),
    )
    return requirements


async def derive_for_mesh(
    declaration: MeshDeclaration,
    *,
    chart_repo: str = "",
    mirror: Path | None = None,
    manifests_url: str = "",
    cache_dir: Path,
) -> Requirements:
    """`derive` with the chart repository and manifests an adapter configured the same way
    (``--chart-repo``, ``--mirror``, ``--manifests-url``) would use."""
    from adapters.kit.process.executor_assembly import build_executor
    from adapters.kit.process.settings import AdapterSettings
    from adapters.kit.run.real_executor import install_chart

    settings = AdapterSettings(
        chart_repo=chart_repo,
        mirror_dir=mirror,
        manifests_url=manifests_url,
        cache_dir=cache_dir,
    )
    executor, _ = build_executor(declaration, settings)
    planner = executor.planner
    return await derive(
        declaration,
        charts=planner.charts,
        manifests=planner.manifests,
        install_chart=install_chart(declaration),
    )


# -- CLI -------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane rbac MESH`."""
    parser = subparsers.add_parser(
        "rbac",
        help="print the least-privilege ClusterRole an adapter needs",
        description="Render every chart version the adapter supports (and its manifests and "
        "built objects) and print the ClusterRole covering what applying, uninstalling and "
        "validating them uses. deploy/helm/meshplane/files/rbac-MESH.yaml is this output.",
    )
    parser.add_argument("mesh", metavar="MESH", help="istio, linkerd, consul, or MODULE:NAME")
    parser.add_argument("--chart-repo", default="", metavar="URL", help="chart repository")
    parser.add_argument("--mirror", type=Path, default=None, metavar="DIR", help="offline mirror")
    parser.add_argument("--manifests-url", default="", metavar="URL", help="manifests location")
    parser.add_argument("--cache-dir", type=Path, default=None, help="download cache")
    parser.add_argument("--name", default="", help="ClusterRole name (meshplane-adapter-MESH)")
    parser.add_argument("--log-level", default="warning", help="logs go to stderr (warning)")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    import tempfile

    from adapters.kit.plan.planner import PlanError
    from adapters.kit.process.mesh_registry import UnknownMesh, load_declaration
    from serving.logging_setup import configure_logging

    try:
        declaration = load_declaration(args.mesh)
    except UnknownMesh as exc:
        print(f"meshplane rbac: {exc}", file=sys.stderr)
        return 2
    # Logs go to stderr: stdout is the ClusterRole.
    configure_logging(level=args.log_level, stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="meshplane-rbac-") as scratch:
        try:
            requirements = asyncio.run(
                derive_for_mesh(
                    declaration,
                    chart_repo=args.chart_repo,
                    mirror=args.mirror,
                    manifests_url=args.manifests_url,
                    cache_dir=args.cache_dir or Path(scratch),
                )
            )
        except (RbacError, PlanError, OSError, RuntimeError) as exc:
            print(f"meshplane rbac: {exc}", file=sys.stderr)
            return 1
    header = (
        f"# Generated by `meshplane rbac {declaration.mesh}`: what the {declaration.mesh} "
        "adapter's charts,\n# manifests and checks need. Do not edit; regenerate. "
        f"Mesh versions rendered: {', '.join(requirements.versions) or 'none'}.\n"
    )
    sys.stdout.write(header + yaml.safe_dump(cluster_role(requirements, name=args.name)))
    return 0
