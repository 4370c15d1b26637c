"""The control plane's certificates, generated fresh for each data directory (as envtest does).

One CA signs: the API server's serving certificate (loopback, ``kubernetes.default.svc`` names
and the first Service IP), etcd's serving certificate, the API server's etcd client certificate,
and one client certificate per component (the admin's in ``system:masters``, the controller
manager and scheduler under their well-known user names, kwok in ``system:masters`` since it
plays every kubelet). A separate key signs ServiceAccount tokens. Private keys are mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
SERVER_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True, kw_only=True)
class ClientIdentity:
    """Who a client certificate says its holder is."""

    name: str
    """File stem under the PKI directory."""
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity(name="admin", user="meshplane-admin", groups=("system:masters",))
CONTROLLER_MANAGER = ClientIdentity(
    name="kube-controller-manager", user="system:kube-controller-manager"
)
SCHEDULER = ClientIdentity(name="kube-scheduler", user="system:kube-scheduler")
KWOK = ClientIdentity(name="kwok", user="kwok", groups=("system:masters",))
ETCD_CLIENT = ClientIdentity(name="apiserver-etcd-client", user="kube-apiserver-etcd-client")
CLIENTS: tuple[ClientIdentity, ...] = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, KWOK, ETCD_CLIENT)


@dataclass(frozen=True, kw_only=True)
class Pki:
    """Where each certificate and key of one control plane lives."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def etcd_cert(self) -> Path:
        return self.directory / "etcd-server.crt"

    @property
    def etcd_key(self) -> Path:
        return self.directory / "etcd-server.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "service-account.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "service-account.pub"

    def client_cert(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.name}.crt"

    def client_key(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.name}.key"


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class _Authority:
    def __init__(self, now: datetime.datetime) -> None:
        self.now = now
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshplane-realkube-ca")])
        self.cert = (
            self._builder(self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def _builder(
        self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - datetime.timedelta(minutes=5))
            .not_valid_after(self.now + VALIDITY)
        )

    def issue(
        self,
        subject: x509.Name,
        *,
        usages: Sequence[x509.ObjectIdentifier],
        names: Sequence[x509.GeneralName] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            self._builder(subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        )
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(list(names)), critical=False
            )
        return builder.sign(self.key, hashes.SHA256()), key


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        content_commitment=False,
        key_encipherment=not cert_sign,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _subject(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def generate_pki(directory: Path, *, first_service_ip: str) -> Pki:
    """Write a fresh CA, serving and client certificates and the ServiceAccount key pair."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    pki = Pki(directory=directory)
    authority = _Authority(datetime.datetime.now(datetime.UTC))
    _write_cert(pki.ca_cert, authority.cert)
    _write_key(pki.ca_key, authority.key)

    loopback: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    server_names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    cert, key = authority.issue(
        _subject("kube-apiserver"),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        names=[*server_names, *loopback, x509.IPAddress(ipaddress.ip_address(first_service_ip))],
    )
    _write_cert(pki.apiserver_cert, cert)
    _write_key(pki.apiserver_key, key)
    cert, key = authority.issue(
        _subject("etcd"),
        usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        names=[x509.DNSName("localhost"), *loopback],
    )
    _write_cert(pki.etcd_cert, cert)
    _write_key(pki.etcd_key, key)
    for identity in CLIENTS:
        cert, key = authority.issue(
            _subject(identity.user, identity.groups), usages=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        _write_cert(pki.client_cert(identity), cert)
        _write_key(pki.client_key(identity), key)

    signing = ec.generate_private_key(ec.SECP256R1())
    _write_key(pki.service_account_key, signing)
    pki.service_account_public_key.write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki
