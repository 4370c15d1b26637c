"""The trust chain validate checks: present, chaining, graded by expiry, and the stored one."""

from __future__ import annotations

import base64
import datetime as dt

from adapters.kit.declare.certificate_checks import (
    PemLocation,
    trust_chain_stored,
    trust_chain_valid,
)
from adapters.kit.declare.certificate_store import ANCHOR_CERT, StoredTrustChain
from adapters.kit.declare.certificates import TrustChain, generate_trust_chain
from adapters.kit.declare.checks import CheckContext, Finding
from adapters.kit.model.records import Severity
from tests.kit.in_memory_cluster import InMemoryCluster

ROOTS = PemLocation(kind="ConfigMap", name="trust-roots", key="ca-bundle.crt")
ISSUER = PemLocation(kind="Secret", name="issuer", key="crt.pem")
CHECK = trust_chain_valid(anchor=ROOTS, issuer=ISSUER)


def cluster_with(anchor_pem: str, issuer_pem: str) -> InMemoryCluster:
    return InMemoryCluster(
        [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "trust-roots", "namespace": "mesh"},
                "data": {"ca-bundle.crt": anchor_pem},
            },
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "issuer", "namespace": "mesh"},
                "data": {"crt.pem": base64.b64encode(issuer_pem.encode()).decode()},
            },
        ]
    )


async def run(cluster: InMemoryCluster) -> list[Finding]:
    ctx = CheckContext(mesh="test", namespace="mesh", parameters={}, cluster=cluster)
    return list(await CHECK(ctx))


def chain(
    issuer_validity: dt.timedelta = dt.timedelta(days=365), now: dt.datetime | None = None
) -> TrustChain:
    return generate_trust_chain(
        anchor_name="root", issuer_name="issuer", issuer_validity=issuer_validity, now=now
    )


def severities(findings: list[Finding]) -> list[Severity]:
    return [f.severity for f in findings]


async def test_a_fresh_chain_passes() -> None:
    good = chain()
    findings = await run(cluster_with(good.anchor.certificate_pem, good.issuer.certificate_pem))
    assert severities(findings) == [Severity.INFO] * 3
    assert findings[-1].summary == "the issuer certificate chains to the trust anchor"


async def test_an_issuer_from_another_anchor_is_an_error() -> None:
    ours, theirs = chain(), chain()
    findings = await run(cluster_with(ours.anchor.certificate_pem, theirs.issuer.certificate_pem))
    assert findings[-1].severity is Severity.ERROR
    assert "does not chain" in findings[-1].summary
    assert "not signed by the trust anchor" in findings[-1].details


async def test_expiry_soon_is_a_warning_and_expired_an_error() -> None:
    soon = chain(issuer_validity=dt.timedelta(days=10))
    findings = await run(cluster_with(soon.anchor.certificate_pem, soon.issuer.certificate_pem))
    assert severities(findings) == [Severity.INFO, Severity.WARNING, Severity.INFO]
    assert "expires in 9 days" in findings[1].summary
    past = chain(
        issuer_validity=dt.timedelta(days=1), now=dt.datetime.now(dt.UTC) - dt.timedelta(days=5)
    )
    findings = await run(cluster_with(past.anchor.certificate_pem, past.issuer.certificate_pem))
    assert findings[1].severity is Severity.ERROR
    assert "the issuer certificate expired" in findings[1].summary


async def test_missing_or_garbled_certificates_are_errors() -> None:
    findings = await run(InMemoryCluster())
    assert severities(findings) == [Severity.ERROR, Severity.ERROR]
    assert "no ca-bundle.crt in ConfigMap mesh/trust-roots" in findings[0].summary
    good = chain()
    findings = await run(cluster_with(good.anchor.certificate_pem, "not a certificate"))
    assert severities(findings) == [Severity.INFO, Severity.ERROR]
    assert findings[1].summary == "the issuer in Secret mesh/issuer is not a certificate"


STORE = StoredTrustChain(secret_name="stored", anchor_name="root", issuer_name="issuer")
STORED_CHECK = trust_chain_stored(STORE, anchor=ROOTS)


async def stored_findings(cluster: InMemoryCluster) -> list[Finding]:
    ctx = CheckContext(mesh="test", namespace="mesh", parameters={}, cluster=cluster)
    return list(await STORED_CHECK(ctx))


async def test_the_published_anchor_must_be_the_stored_one() -> None:
    good = chain()
    cluster = cluster_with(good.anchor.certificate_pem, good.issuer.certificate_pem)
    [missing] = await stored_findings(cluster)
    assert missing.severity is Severity.WARNING
    assert "no stored trust chain" in missing.summary
    stored = {ANCHOR_CERT: base64.b64encode(good.anchor.certificate_pem.encode()).decode()}
    cluster.add(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "stored", "namespace": "mesh"},
            "data": stored,
        }
    )
    [kept] = await stored_findings(cluster)
    assert kept.severity is Severity.INFO
    rotated = chain()
    bundle = rotated.anchor.certificate_pem
    [changed] = await stored_findings(cluster_with(bundle, rotated.issuer.certificate_pem))
    assert changed.severity is Severity.WARNING  # no stored Secret in that cluster either
    cluster.objects[0]["data"]["ca-bundle.crt"] = bundle
    [changed] = await stored_findings(cluster)
    assert changed.severity is Severity.WARNING
    assert "not the stored one" in changed.summary
    cluster.objects[0]["data"]["ca-bundle.crt"] = bundle + good.anchor.certificate_pem
    [during_rotation] = await stored_findings(cluster)
    assert during_rotation.severity is Severity.INFO
