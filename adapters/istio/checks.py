"""What `validate` looks at in an Istio mesh.

The generic blocks (CRDs, istiod, webhooks, sidecars) come from the kit; what is Istio's own is
the routing check: a VirtualService host or destination that names no Service (or
ServiceEntry) sends traffic nowhere (WARNING), and a subset no DestinationRule defines makes
Envoy answer 503 (ERROR).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from adapters.kit import (
    Check,
    CheckContext,
    Finding,
    InjectionMarker,
    KubeObject,
    MarkerField,
    ServiceIndex,
    Severity,
    all_of,
    crds_established,
    deployments_ready,
    injected_namespaces_have_sidecars,
    webhooks_present,
)

NETWORKING = "networking.istio.io/v1"
INJECTION = InjectionMarker(field=MarkerField.LABEL, key="istio-injection", value="enabled")
SIDECAR_CONTAINER = "istio-proxy"


def _destinations(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for protocol in ("http", "tcp", "tls"):
        for route in spec.get(protocol) or []:
            for target in (route or {}).get("route") or []:
                destination = (target or {}).get("destination")
                if isinstance(destination, dict):
                    yield destination
            mirror = (route or {}).get("mirror")
            if isinstance(mirror, dict):
                yield mirror


class _Routing:
    """What routes may point at: Services, ServiceEntry hosts and DestinationRule subsets."""

    def __init__(
        self,
        services: ServiceIndex,
        entries: Sequence[KubeObject],
        rules: Sequence[KubeObject],
    ) -> None:
        self.services = services
        self.external = {
            str(host) for entry in entries for host in (entry.get("spec") or {}).get("hosts") or []
        }
        self.subsets: dict[tuple[str, str] | str, set[str]] = {}
        for rule in rules:
            spec = rule.get("spec") or {}
            namespace = str((rule.get("metadata") or {}).get("namespace", ""))
            names = {str(s.get("name")) for s in spec.get("subsets") or [] if isinstance(s, dict)}
            self.subsets.setdefault(
                self._target(str(spec.get("host", "")), namespace), set()
            ).update(names)

    def _target(self, host: str, namespace: str) -> tuple[str, str] | str:
        return self.services.key_of(host, namespace) or host

    def resolves(self, host: str, namespace: str) -> bool:
        return host in self.external or self.services.service_of(host, namespace) is not None

    def has_subset(self, host: str, namespace: str, subset: str) -> bool:
        return subset in self.subsets.get(self._target(host, namespace), set())


def _problems(vs: KubeObject, routing: _Routing) -> tuple[list[str], list[str]]:
    """(unresolved hosts/destinations, missing subsets) of one VirtualService."""
    spec = vs.get("spec") or {}
    namespace = str((vs.get("metadata") or {}).get("namespace", ""))
    unresolved: list[str] = []
    missing: list[str] = []
    if not spec.get("gateways"):
        # Gateway-bound hosts are what clients ask the gateway for, not mesh names.
        for host in map(str, spec.get("hosts") or []):
            if "*" not in host and not routing.resolves(host, namespace):
                unresolved.append(f"host {host}")
    for destination in _destinations(spec):
        host = str(destination.get("host", ""))
        if "*" in host:
            continue
        if not routing.resolves(host, namespace):
            unresolved.append(f"destination {host}")
            continue
        subset = destination.get("subset")
        if subset and not routing.has_subset(host, namespace, str(subset)):
            missing.append(f"{host} subset {subset}")
    return sorted(set(unresolved)), sorted(set(missing))


async def virtual_services_resolve(ctx: CheckContext) -> Sequence[Finding]:
    """Every VirtualService's hosts, destinations and subsets exist, in every namespace."""
    if not await ctx.cluster.has_kind(NETWORKING, "VirtualService"):
        return []
    virtual_services = await ctx.cluster.list(NETWORKING, "VirtualService")
    routing = _Routing(
        await ServiceIndex.load(ctx.cluster),
        await ctx.cluster.list(NETWORKING, "ServiceEntry"),
        await ctx.cluster.list(NETWORKING, "DestinationRule"),
    )
    findings: list[Finding] = []
    for vs in virtual_services:
        metadata = vs.get("metadata") or {}
        component = f"VirtualService {metadata.get('namespace', '')}/{metadata.get('name', '')}"
        unresolved, missing = _problems(vs, routing)
        if missing:
            findings.append(
                Finding(
                    severity=Severity.ERROR,
                    summary=f"{component} routes to subsets no DestinationRule defines",
                    component=component,
                    details="requests routed there fail with 503; apply the DestinationRule "
                    "(e.g. `bookinfo-route-v1`) or fix the subset:\n" + "\n".join(missing),
                )
            )
        if unresolved:
            findings.append(
                Finding(
                    severity=Severity.WARNING,
                    summary=f"{component} refers to hosts with no Service or ServiceEntry",
                    component=component,
                    details="deploy the service (e.g. `bookinfo`) or fix the host:\n"
                    + "\n".join(unresolved),
                )
            )
    if not findings:
        findings.append(
            Finding(
                severity=Severity.INFO,
                summary=f"{len(virtual_services)} VirtualServices: every host and subset resolves",
                component="VirtualService",
            )
        )
    return findings


VALIDATE: Check = all_of(
    crds_established(".istio.io", what="Istio"),
    deployments_ready("istiod"),
    webhooks_present(
        "MutatingWebhookConfiguration", "app=sidecar-injector", what="sidecar injection"
    ),
    webhooks_present("ValidatingWebhookConfiguration", "app=istiod", what="config validation"),
    injected_namespaces_have_sidecars(
        INJECTION, container=SIDECAR_CONTAINER, opt_out=("sidecar.istio.io/inject", "false")
    ),
    virtual_services_resolve,
)
"""The `validate` operation's findings, in the order they are reported."""
