"""The generated PKI: who each client certificate names, what the serving one covers, and that
private keys and kubeconfigs are readable by the owner only."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from realkube.certificates import ADMIN, CLIENTS, KWOK, SCHEDULER, generate_pki
from realkube.kubeconfigs import write_kubeconfig


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_certificates_chain_to_one_ca_and_name_their_users(tmp_path: Path) -> None:
    pki = generate_pki(tmp_path / "pki", first_service_ip="10.96.0.1")
    ca = load(pki.ca_cert)
    serving = load(pki.apiserver_cert)
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "kubernetes.default.svc" in names.get_values_for_type(x509.DNSName)
    assert {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("10.96.0.1")} <= set(
        names.get_values_for_type(x509.IPAddress)
    )
    for identity in CLIENTS:
        cert = load(pki.client_cert(identity))
        cert.verify_directly_issued_by(ca)
        subject = cert.subject
        assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == identity.user
        groups = [a.value for a in subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        assert tuple(groups) == identity.groups
    assert ADMIN.groups == ("system:masters",) and KWOK.groups == ("system:masters",)
    assert SCHEDULER.user == "system:kube-scheduler" and SCHEDULER.groups == ()


def test_keys_and_kubeconfigs_are_private(tmp_path: Path) -> None:
    pki = generate_pki(tmp_path / "pki", first_service_ip="10.96.0.1")
    keys = [pki.ca_key, pki.apiserver_key, pki.service_account_key, pki.client_key(ADMIN)]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    path = write_kubeconfig(
        tmp_path / "out" / "kubeconfig", server="https://127.0.0.1:6443", pki=pki, identity=ADMIN
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert config["users"][0]["user"]["client-key-data"]
