"""Stored certificates: generated once, reused from the cluster, renewed near expiry."""

from __future__ import annotations

import base64
import datetime as dt

from adapters.kit.declare.certificate_store import (
    ANCHOR_CERT,
    ANCHOR_KEY,
    ISSUER_CERT,
    ISSUER_KEY,
    StoredServingCertificates,
    StoredTrustChain,
)
from adapters.kit.declare.certificates import (
    chain_problem,
    generate_trust_chain,
    hosts_of,
    self_signed_server,
    validity_left,
)
from adapters.kit.declare.sources import PlanContext
from adapters.kit.model.objects import KubeObject
from tests.kit.in_memory_cluster import InMemoryCluster

STORE = StoredTrustChain(
    secret_name="mesh-identity", anchor_name="root.test", issuer_name="issuer.test"
)


def context(cluster: InMemoryCluster) -> PlanContext:
    return PlanContext(
        mesh="test",
        operation="install",
        namespace="mesh-system",
        mesh_version="1.0.0",
        parameters={},
        delete=False,
        cluster=cluster,
    )


async def stored_secret(cluster: InMemoryCluster) -> KubeObject:
    [secret] = await STORE.secret()(context(cluster))
    return secret


def decoded(secret: KubeObject) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


async def test_first_plan_generates_once_and_the_secret_holds_that_chain() -> None:
    cluster = InMemoryCluster()
    ctx = context(cluster)
    chain = await STORE.chain(ctx)
    assert await STORE.chain(ctx) is chain  # the values builder and the Secret agree
    [secret] = await STORE.secret()(ctx)
    assert secret["metadata"] == {"name": "mesh-identity", "namespace": "mesh-system"}
    texts = decoded(secret)
    assert texts[ANCHOR_CERT] == chain.anchor.certificate_pem
    assert texts[ANCHOR_KEY] == chain.anchor.key_pem
    assert texts[ISSUER_CERT] == chain.issuer.certificate_pem
    assert texts[ISSUER_KEY] == chain.issuer.key_pem
    # A fresh plan with nothing stored generates a different chain.
    assert (await STORE.chain(context(cluster))).anchor != chain.anchor


async def test_later_plans_reuse_the_stored_chain() -> None:
    cluster = InMemoryCluster()
    cluster.add(await stored_secret(cluster))
    first = decoded(cluster.objects[0])
    again = await STORE.chain(context(cluster))
    assert again.anchor.certificate_pem == first[ANCHOR_CERT]
    assert again.issuer.certificate_pem == first[ISSUER_CERT]
    assert decoded(await stored_secret(cluster)) == first


async def test_an_issuer_near_expiry_is_renewed_under_the_same_anchor() -> None:
    old = generate_trust_chain(
        anchor_name="root.test", issuer_name="issuer.test", issuer_validity=dt.timedelta(days=10)
    )
    texts = {
        ANCHOR_CERT: old.anchor.certificate_pem,
        ANCHOR_KEY: old.anchor.key_pem,
        ISSUER_CERT: old.issuer.certificate_pem,
        ISSUER_KEY: old.issuer.key_pem,
    }
    cluster = InMemoryCluster(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "mesh-identity", "namespace": "mesh-system"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in texts.items()},
            }
        ]
    )
    renewed = await STORE.chain(context(cluster))
    assert renewed.anchor == old.anchor
    assert renewed.issuer != old.issuer
    assert validity_left(renewed.issuer.certificate) > dt.timedelta(days=360)
    assert chain_problem(renewed.anchor.certificate_pem, renewed.issuer.certificate_pem) is None


async def test_an_unreadable_secret_is_replaced_by_a_new_chain() -> None:
    cluster = InMemoryCluster(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "mesh-identity", "namespace": "mesh-system"},
                "data": {ANCHOR_CERT: base64.b64encode(b"garbage").decode()},
            }
        ]
    )
    chain = await STORE.chain(context(cluster))
    assert chain_problem(chain.anchor.certificate_pem, chain.issuer.certificate_pem) is None


WEBHOOKS = StoredServingCertificates(
    secret_name="mesh-webhooks", services=("injector", "validator")
)


async def test_serving_certificates_are_for_each_service_and_reused_once_stored() -> None:
    cluster = InMemoryCluster()
    ctx = context(cluster)
    made = await WEBHOOKS.certificates(ctx)
    assert await WEBHOOKS.certificates(ctx) is made
    assert hosts_of(made["injector"].certificate) == ["injector.mesh-system.svc"]
    assert hosts_of(made["validator"].certificate) == ["validator.mesh-system.svc"]
    [secret] = await WEBHOOKS.secret()(ctx)
    assert sorted(secret["data"]) == [
        "injector.crt",
        "injector.key",
        "validator.crt",
        "validator.key",
    ]
    cluster.add(secret)
    assert await WEBHOOKS.certificates(context(cluster)) == made


async def test_serving_certificates_for_another_namespace_or_near_expiry_are_replaced() -> None:
    elsewhere = self_signed_server("injector.other.svc")
    expiring = self_signed_server("validator.mesh-system.svc", validity=dt.timedelta(days=3))
    texts = {
        "injector.crt": elsewhere.certificate_pem,
        "injector.key": elsewhere.key_pem,
        "validator.crt": expiring.certificate_pem,
        "validator.key": expiring.key_pem,
    }
    cluster = InMemoryCluster(
        [
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "mesh-webhooks", "namespace": "mesh-system"},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in texts.items()},
            }
        ]
    )
    made = await WEBHOOKS.certificates(context(cluster))
    assert hosts_of(made["injector"].certificate) == ["injector.mesh-system.svc"]
    assert validity_left(made["validator"].certificate) > dt.timedelta(days=300)
