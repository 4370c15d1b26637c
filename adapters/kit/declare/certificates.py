"""X.509 certificates a mesh's control plane needs: a trust anchor, an issuer, webhook servers.

Meshes that issue workload certificates themselves (Linkerd's identity controller) want a root CA
(the trust anchor every proxy trusts) and an intermediate CA signed by it (the issuer the
controller signs with). Both are ECDSA P-256, as the meshes' own tooling makes them. Checking is
here too, so `validate` proves the issuer really chains to the anchor and is not about to expire.
Admission webhooks want a serving certificate for their Service's DNS name, self-signed so the
same PEM is the webhook's caBundle (what a chart's `genSelfSignedCert` makes at every render).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateError",
    "CertifiedKey",
    "TrustChain",
    "chain_problem",
    "generate_trust_chain",
    "hosts_of",
    "issue_intermediate",
    "load_bundle",
    "load_certificate",
    "self_signed_server",
    "validity_left",
]

CLOCK_SKEW = dt.timedelta(minutes=5)
"""Certificates start this far in the past, so nodes with a clock slightly behind accept them."""


class CertificateError(ValueError):
    """A PEM could not be parsed, or a certificate does not fit where it is used."""


@dataclass(frozen=True, kw_only=True)
class CertifiedKey:
    """A certificate and its private key, both PEM text (a CA, or a self-signed server)."""

    certificate_pem: str
    key_pem: str

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return load_certificate(self.certificate_pem)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The parsed private key (ECDSA only: that is what the meshes use)."""
        try:
            key = serialization.load_pem_private_key(self.key_pem.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError) as exc:
            raise CertificateError(f"not a PEM private key: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateError(f"expected an ECDSA key, got {type(key).__name__}")
        return key


@dataclass(frozen=True, kw_only=True)
class TrustChain:
    """A trust anchor (root CA) and the issuer (intermediate CA) it signed."""

    anchor: CertifiedKey
    issuer: CertifiedKey


def load_certificate(pem: str) -> x509.Certificate:
    """Parse the first certificate of a PEM text; `CertificateError` when there is none."""
    try:
        return x509.load_pem_x509_certificate(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateError(f"not a PEM certificate: {exc}") from exc


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _ca_certificate(
    *,
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    signer: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    path_length: int | None,
    validity: dt.timedelta,
    now: dt.datetime,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def issue_intermediate(
    anchor: CertifiedKey,
    *,
    common_name: str,
    validity: dt.timedelta,
    now: dt.datetime | None = None,
) -> CertifiedKey:
    """A new intermediate CA (path length 0) signed by ``anchor``: an issuer for workloads."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _ca_certificate(
        subject=common_name,
        key=key,
        signer=anchor.private_key(),
        issuer=anchor.certificate.subject,
        path_length=0,
        validity=validity,
        now=_now(now),
    )
    return CertifiedKey(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        key_pem=_pem(key),
    )


def generate_trust_chain(
    *,
    anchor_name: str,
    issuer_name: str,
    anchor_validity: dt.timedelta = dt.timedelta(days=3650),
    issuer_validity: dt.timedelta = dt.timedelta(days=365),
    now: dt.datetime | None = None,
) -> TrustChain:
    """A fresh self-signed root CA and an intermediate CA it signed (ECDSA P-256, SHA-256)."""
    when = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    root = _ca_certificate(
        subject=anchor_name,
        key=key,
        signer=key,
        issuer=None,
        path_length=1,
        validity=anchor_validity,
        now=when,
    )
    anchor = CertifiedKey(
        certificate_pem=root.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        key_pem=_pem(key),
    )
    issuer = issue_intermediate(anchor, common_name=issuer_name, validity=issuer_validity, now=when)
    return TrustChain(anchor=anchor, issuer=issuer)


def self_signed_server(
    host: str, *, validity: dt.timedelta = dt.timedelta(days=365), now: dt.datetime | None = None
) -> CertifiedKey:
    """A self-signed serving certificate for ``host`` (e.g. ``svc.namespace.svc``), ECDSA P-256."""
    when = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - CLOCK_SKEW)
        .not_valid_after(when + validity)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        key_pem=_pem(key),
    )


def hosts_of(certificate: x509.Certificate) -> list[str]:
    """The DNS names a certificate is for (its subjectAltName)."""
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(names.value.get_values_for_type(x509.DNSName))


def validity_left(certificate: x509.Certificate, *, now: dt.datetime | None = None) -> dt.timedelta:
    """Time until ``certificate`` expires (negative once it has)."""
    return certificate.not_valid_after_utc - _now(now)


def chain_problem(
    anchor_pem: str, issuer_pem: str, *, now: dt.datetime | None = None
) -> str | None:
    """Why ``issuer_pem`` is not a usable CA under ``anchor_pem``; None when it is.

    ``anchor_pem`` may be a bundle (several roots, as during an anchor rotation): the issuer must
    be signed by one of them. Expiry is not judged here (see `validity_left`), only whether the
    issuer is a CA, was issued by an anchor, carries a valid signature, and has started.
    """
    issuer = load_certificate(issuer_pem)
    anchors = load_bundle(anchor_pem)
    if not anchors:
        return "the trust anchor bundle holds no certificate"
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "the issuer certificate has no basicConstraints (it is not a CA)"
    if not constraints.ca:
        return "the issuer certificate is not a CA (basicConstraints CA:FALSE)"
    if issuer.not_valid_before_utc > _now(now):
        return f"the issuer certificate is not valid before {issuer.not_valid_before_utc}"
    reasons: list[str] = []
    for anchor in anchors:
        try:
            issuer.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature) as exc:
            reasons.append(f"{anchor.subject.rfc4514_string()}: {exc or type(exc).__name__}")
            continue
        return None
    return "the issuer is not signed by the trust anchor (" + "; ".join(reasons) + ")"


def load_bundle(pem: str) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (e.g. trust anchors during a rotation)."""
    try:
        return x509.load_pem_x509_certificates(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise CertificateError(f"not a PEM certificate bundle: {exc}") from exc
