"""``--tls-client-ca``: a verified client certificate is an identity, as in kube-apiserver.

The subject's common name (CN) is the user and each organization (O) a group. The TLS handshake
has already verified the chain against the client CA; this only reads the verified leaf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from cryptography import x509
from cryptography.x509.oid import NameOID

from coordinator.server.identity.subjects import Subject

__all__ = ["subject_from_auth_context"]

_log = structlog.get_logger(__name__)


def subject_from_auth_context(auth_context: Mapping[str, Sequence[bytes]]) -> Subject | None:
    """The certificate's subject (None without a verified client certificate or a CN)."""
    pems = auth_context.get("x509_pem_cert") or ()
    if not pems:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(pems[0])
    except ValueError as exc:
        _log.warning("auth.client_certificate_unreadable", error=str(exc))
        return None
    name = certificate.subject
    common_names = [str(a.value) for a in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if not common_names or not common_names[0]:
        return None
    groups = tuple(
        str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) if a.value
    )
    return Subject(user=common_names[0], groups=groups, authenticated_by="certificate")
