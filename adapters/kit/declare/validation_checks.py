"""Reusable building blocks for VALIDATE operations: each returns a `Check` over one cluster.

A mesh declares its validate operation as a list of these (plus any mesh-specific checks, and
the injection check of `adapters.kit.declare.injection`);
`all_of` runs them in order and concatenates the findings. Every block reports what it found
healthy as INFO, so an all-green run still says what was looked at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.kit.declare.checks import Check, CheckContext, Finding
from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.model.objects import KubeObject
from adapters.kit.model.records import Severity

__all__ = [
    "ServiceIndex",
    "all_of",
    "crds_established",
    "deployments_ready",
    "webhooks_present",
    "workloads_ready",
]


def all_of(*checks: Check) -> Check:
    """One check running several in order."""

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        findings: list[Finding] = []
        for check in checks:
            findings.extend(await check(ctx))
        return findings

    return run


def _name(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))


def _conditions(obj: KubeObject) -> dict[str, str]:
    status = obj.get("status") or {}
    return {
        str(c.get("type")): str(c.get("status"))
        for c in status.get("conditions") or []
        if isinstance(c, dict)
    }


def crds_established(group_suffix: str, *, what: str) -> Check:
    """Every CRD whose group ends in ``group_suffix`` is Established (and there is at least one).

    ``what`` names them for the user, e.g. "Istio".
    """

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        crds = [
            crd
            for crd in await ctx.cluster.list("apiextensions.k8s.io/v1", "CustomResourceDefinition")
            if str((crd.get("spec") or {}).get("group", "")).endswith(group_suffix)
        ]
        if not crds:
            return [
                Finding(
                    severity=Severity.ERROR,
                    summary=f"no {what} CRDs (*{group_suffix}) are installed",
                    component="CustomResourceDefinition",
                    details=f"install {what} first; its custom resources need them",
                )
            ]
        pending = sorted(_name(c) for c in crds if _conditions(c).get("Established") != "True")
        if pending:
            return [
                Finding(
                    severity=Severity.ERROR,
                    summary=f"{len(pending)} of {len(crds)} {what} CRDs are not Established",
                    component="CustomResourceDefinition",
                    details="\n".join(pending),
                )
            ]
        return [
            Finding(
                severity=Severity.INFO,
                summary=f"{len(crds)} {what} CRDs established",
                component="CustomResourceDefinition",
            )
        ]

    return run


def _workload_problem(deployment: KubeObject) -> str | None:
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    ready = int(status.get("readyReplicas", 0) or 0)
    updated = int(status.get("updatedReplicas", 0) or 0)
    generation = int((deployment.get("metadata") or {}).get("generation", 0) or 0)
    observed = int(status.get("observedGeneration", 0) or 0)
    if observed < generation:
        return "the controller has not observed the latest spec yet"
    if updated < wanted:
        return f"{updated} of {wanted} replicas updated"
    if ready < wanted:
        return f"{ready} of {wanted} replicas ready"
    return None


def deployments_ready(*names: str) -> Check:
    """Each named Deployment in the request's namespace exists and has all replicas ready."""
    return workloads_ready("Deployment", *names)


def workloads_ready(kind: str, *names: str) -> Check:
    """Each named workload (Deployment or StatefulSet) in the request's namespace exists and has
    all replicas updated and ready."""

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        findings: list[Finding] = []
        for name in names:
            component = f"{kind} {ctx.namespace}/{name}"
            workload = await ctx.cluster.get("apps/v1", kind, name, ctx.namespace)
            if workload is None:
                findings.append(
                    Finding(
                        severity=Severity.ERROR,
                        summary=f"{component} does not exist",
                        component=component,
                        details="install the mesh into this namespace, or validate the namespace "
                        "it is installed in",
                    )
                )
                continue
            problem = _workload_problem(workload)
            findings.append(
                Finding(
                    severity=Severity.ERROR if problem else Severity.INFO,
                    summary=f"{component} is not ready: {problem}"
                    if problem
                    else f"{component} is ready",
                    component=component,
                )
            )
        return findings

    return run


def webhooks_present(kind: str, label_selector: str, *, what: str) -> Check:
    """Webhook configurations of ``kind`` matching the selector exist and their Services too.

    ``kind`` is MutatingWebhookConfiguration or ValidatingWebhookConfiguration; a missing
    webhook is an ERROR, a webhook whose backing Service is missing a WARNING (the API server
    will fail or skip calls to it, depending on its failurePolicy).
    """

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        configs = await ctx.cluster.list(
            "admissionregistration.k8s.io/v1", kind, label_selector=label_selector
        )
        if not configs:
            return [
                Finding(
                    severity=Severity.ERROR,
                    summary=f"no {kind} for {what} ({label_selector})",
                    component=kind,
                    details=f"reinstall the control plane; without it {what} does not happen",
                )
            ]
        findings: list[Finding] = []
        for config in configs:
            component = f"{kind} {_name(config)}"
            missing = await _missing_services(ctx.cluster, config)
            if missing:
                findings.append(
                    Finding(
                        severity=Severity.WARNING,
                        summary=f"{component} calls Services that do not exist",
                        component=component,
                        details="\n".join(missing),
                    )
                )
            else:
                findings.append(
                    Finding(
                        severity=Severity.INFO, summary=f"{component} present", component=component
                    )
                )
        return findings

    return run


async def _missing_services(cluster: ClusterReader, config: KubeObject) -> list[str]:
    missing: list[str] = []
    seen: set[tuple[str, str]] = set()
    for webhook in config.get("webhooks") or []:
        service = ((webhook or {}).get("clientConfig") or {}).get("service")
        if not isinstance(service, dict):
            continue
        key = (str(service.get("namespace", "")), str(service.get("name", "")))
        if key in seen:
            continue
        seen.add(key)
        if await cluster.get("v1", "Service", key[1], key[0]) is None:
            missing.append(f"Service {key[0]}/{key[1]}")
    return missing


@dataclass(frozen=True, kw_only=True)
class ServiceIndex:
    """The Services of a cluster, to resolve the host names routes refer to.

    A host resolves as Kubernetes DNS does: ``name`` in the referring namespace,
    ``name.namespace``, ``name.namespace.svc`` and ``name.namespace.svc.<domain>``.
    """

    services: frozenset[tuple[str, str]]
    """(namespace, name) of every Service."""
    domain: str = "cluster.local"

    @classmethod
    async def load(cls, cluster: ClusterReader, *, domain: str = "cluster.local") -> ServiceIndex:
        """Read every Service in the cluster."""
        services = await cluster.list("v1", "Service")
        return cls(services=frozenset((_namespace(s), _name(s)) for s in services), domain=domain)

    def service_of(self, host: str, namespace: str) -> tuple[str, str] | None:
        """The (namespace, name) ``host`` names from ``namespace``, None if none exists."""
        key = self.key_of(host, namespace)
        return key if key is not None and key in self.services else None

    def key_of(self, host: str, namespace: str) -> tuple[str, str] | None:
        """The (namespace, name) a Kubernetes host name would mean, whether or not it exists."""
        parts = host.split(".")
        if len(parts) == 1:
            return (namespace, parts[0])
        suffixes: Iterable[list[str]] = ([], ["svc"], ["svc", *self.domain.split(".")])
        for suffix in suffixes:
            if len(parts) == 2 + len(suffix) and parts[2:] == suffix:
                return (parts[1], parts[0])
        return None
