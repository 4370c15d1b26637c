"""Validate checks over a mesh's identity certificates as the cluster holds them.

A mesh whose control plane signs workload certificates keeps its trust anchor and issuer in
Secrets or ConfigMaps. `trust_chain_valid` reads them where the mesh keeps them (`PemLocation`),
verifies the issuer's signature against the anchor with `cryptography`, and grades expiry: an
expired certificate is an ERROR (proxies stop getting identities), one expiring soon a WARNING.
`trust_chain_stored` checks the published anchor is the one install keeps (`StoredTrustChain`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from adapters.kit.declare.certificate_store import ANCHOR_CERT, StoredTrustChain
from adapters.kit.declare.certificates import (
    CertificateError,
    chain_problem,
    load_bundle,
    load_certificate,
    validity_left,
)
from adapters.kit.declare.checks import Check, CheckContext, Finding
from adapters.kit.declare.cluster_reader import ClusterReader
from adapters.kit.model.records import Severity

__all__ = ["PemLocation", "trust_chain_stored", "trust_chain_valid"]

DEFAULT_WARN_WITHIN = dt.timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class PemLocation:
    """A PEM held under ``key`` of a Secret (base64 ``data``) or ConfigMap (plain ``data``)."""

    kind: str
    name: str
    key: str

    def __post_init__(self) -> None:
        if self.kind not in ("Secret", "ConfigMap"):
            raise ValueError(f"PEMs live in a Secret or a ConfigMap, not a {self.kind}")

    def component(self, namespace: str) -> str:
        """How findings name it, e.g. ``Secret linkerd/linkerd-identity-issuer``."""
        return f"{self.kind} {namespace}/{self.name}"

    async def read(self, cluster: ClusterReader, namespace: str) -> str | None:
        """The PEM text, None when the object or key is missing; `CertificateError` if garbled."""
        obj = await cluster.get("v1", self.kind, self.name, namespace)
        if obj is None:
            return None
        value = (obj.get("data") or {}).get(self.key)
        if value is None:
            return None
        if self.kind == "ConfigMap":
            return str(value)
        try:
            return base64.b64decode(str(value), validate=True).decode("ascii")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CertificateError(f"{self.key} is not base64 PEM: {exc}") from exc


def _expiry(
    what: str, pem: str, component: str, warn_within: dt.timedelta, now: dt.datetime
) -> Finding:
    certificate = load_certificate(pem)
    left = validity_left(certificate, now=now)
    until = certificate.not_valid_after_utc.isoformat()
    if left <= dt.timedelta(0):
        return Finding(
            severity=Severity.ERROR,
            summary=f"the {what} certificate expired on {until}",
            component=component,
            details="workloads can no longer get identities; rotate it (re-install after "
            "removing the stored certificates, or follow the mesh's rotation procedure)",
        )
    if left < warn_within:
        return Finding(
            severity=Severity.WARNING,
            summary=f"the {what} certificate expires in {left.days} days ({until})",
            component=component,
            details=f"rotate it before it expires; warned {warn_within.days} days ahead",
        )
    return Finding(
        severity=Severity.INFO,
        summary=f"the {what} certificate is valid for {left.days} more days",
        component=component,
    )


def _missing(location: PemLocation, namespace: str, what: str) -> Finding:
    return Finding(
        severity=Severity.ERROR,
        summary=f"the {what} is missing: no {location.key} in {location.component(namespace)}",
        component=location.component(namespace),
        details="install the mesh into this namespace (install generates and stores the "
        "certificates), or validate the namespace it is installed in",
    )


def trust_chain_valid(
    *,
    anchor: PemLocation,
    issuer: PemLocation,
    warn_within: dt.timedelta = DEFAULT_WARN_WITHIN,
) -> Check:
    """The anchor and issuer are present, the issuer is signed by the anchor, neither expired."""

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        now = dt.datetime.now(dt.UTC)
        texts: dict[str, str] = {}
        findings: list[Finding] = []
        for what, location in (("trust anchor", anchor), ("issuer", issuer)):
            component = location.component(ctx.namespace)
            try:
                text = await location.read(ctx.cluster, ctx.namespace)
                if text is None:
                    findings.append(_missing(location, ctx.namespace, what))
                    continue
                findings.append(_expiry(what, text, component, warn_within, now))
                texts[what] = text
            except CertificateError as exc:
                findings.append(
                    Finding(
                        severity=Severity.ERROR,
                        summary=f"the {what} in {component} is not a certificate",
                        component=component,
                        details=str(exc),
                    )
                )
        if len(texts) < 2:
            return findings
        component = issuer.component(ctx.namespace)
        try:
            problem = chain_problem(texts["trust anchor"], texts["issuer"], now=now)
        except CertificateError as exc:
            problem = str(exc)
        if problem is None:
            findings.append(
                Finding(
                    severity=Severity.INFO,
                    summary="the issuer certificate chains to the trust anchor",
                    component=component,
                )
            )
        else:
            findings.append(
                Finding(
                    severity=Severity.ERROR,
                    summary="the issuer certificate does not chain to the trust anchor",
                    component=component,
                    details=f"{problem}; proxies will reject the identities it signs",
                )
            )
        return findings

    return run


def trust_chain_stored(store: StoredTrustChain, *, anchor: PemLocation) -> Check:
    """The anchor the mesh publishes is the one install keeps in ``store``.

    Install reuses the stored chain, so a missing Secret means the next install generates a new
    anchor, and an anchor rotated by hand would be put back by the next install: both break
    meshed pods, so both are WARNINGs saying what to do first.
    """

    async def run(ctx: CheckContext) -> Sequence[Finding]:
        component = f"Secret {ctx.namespace}/{store.secret_name}"
        stored = await PemLocation(kind="Secret", name=store.secret_name, key=ANCHOR_CERT).read(
            ctx.cluster, ctx.namespace
        )
        if stored is None:
            return [
                Finding(
                    severity=Severity.WARNING,
                    summary=f"no stored trust chain ({component})",
                    component=component,
                    details="the next install will generate a new trust anchor and every meshed "
                    "pod will have to be restarted; install (or upgrade) through meshplane so it "
                    "keeps the chain it uses",
                )
            ]
        published = await anchor.read(ctx.cluster, ctx.namespace)
        try:
            bundle = load_bundle(published or "")
            kept = load_certificate(stored) in bundle
        except CertificateError:
            kept = False
        if not kept:
            return [
                Finding(
                    severity=Severity.WARNING,
                    summary=f"the published trust anchor is not the stored one ({component})",
                    component=anchor.component(ctx.namespace),
                    details="the anchor was rotated outside meshplane; the next install would put "
                    f"the stored one back. Update {component} with the new chain first",
                )
            ]
        return [
            Finding(
                severity=Severity.INFO,
                summary="the published trust anchor is the stored one (installs keep it)",
                component=component,
            )
        ]

    return run
