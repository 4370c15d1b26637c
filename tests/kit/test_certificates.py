"""Trust chains: what is generated, and how broken or expiring chains are recognised."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.kit.declare.certificates import (
    CertificateError,
    CertifiedKey,
    chain_problem,
    generate_trust_chain,
    issue_intermediate,
    load_certificate,
    validity_left,
)

ROOT, ISSUER = "root.linkerd.cluster.local", "identity.linkerd.cluster.local"


def test_generated_chain_is_p256_ca_pair_signed_by_the_anchor() -> None:
    chain = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    anchor, issuer = chain.anchor.certificate, chain.issuer.certificate
    for certificate, key in ((anchor, chain.anchor), (issuer, chain.issuer)):
        public = certificate.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        assert public.curve.name == "secp256r1"
        assert key.private_key().public_key().public_numbers() == public.public_numbers()
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca
    assert anchor.subject.rfc4514_string() == f"CN={ROOT}"
    assert issuer.subject.rfc4514_string() == f"CN={ISSUER}"
    assert issuer.issuer == anchor.subject
    assert issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    issuer.verify_directly_issued_by(anchor)
    assert chain_problem(chain.anchor.certificate_pem, chain.issuer.certificate_pem) is None
    assert dt.timedelta(days=364) < validity_left(issuer) <= dt.timedelta(days=365)
    assert validity_left(anchor) > dt.timedelta(days=3649)


def test_issuer_of_another_anchor_is_named_as_not_chaining() -> None:
    ours = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    theirs = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    problem = chain_problem(ours.anchor.certificate_pem, theirs.issuer.certificate_pem)
    assert problem is not None and "not signed by the trust anchor" in problem


def test_issuer_signed_by_any_anchor_of_a_bundle_chains() -> None:
    old = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    new = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    bundle = old.anchor.certificate_pem + new.anchor.certificate_pem
    assert chain_problem(bundle, new.issuer.certificate_pem) is None
    assert chain_problem(bundle, old.issuer.certificate_pem) is None


def test_reissued_intermediate_keeps_the_anchor() -> None:
    chain = generate_trust_chain(anchor_name=ROOT, issuer_name=ISSUER)
    renewed = issue_intermediate(chain.anchor, common_name=ISSUER, validity=dt.timedelta(days=7))
    assert renewed.certificate_pem != chain.issuer.certificate_pem
    assert chain_problem(chain.anchor.certificate_pem, renewed.certificate_pem) is None
    assert validity_left(renewed.certificate) < dt.timedelta(days=7)


def test_expired_certificates_have_negative_validity_left() -> None:
    then = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    chain = generate_trust_chain(
        anchor_name=ROOT, issuer_name=ISSUER, issuer_validity=dt.timedelta(days=1), now=then
    )
    assert validity_left(chain.issuer.certificate) < dt.timedelta(0)


def test_garbage_is_a_certificate_error() -> None:
    with pytest.raises(CertificateError):
        load_certificate("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")
    with pytest.raises(CertificateError):
        CertifiedKey(certificate_pem="", key_pem="nope").private_key()
