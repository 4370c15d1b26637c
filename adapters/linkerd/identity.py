"""Linkerd's identity certificates: where they are stored and which chart values receive them.

The kit generates and keeps the chain (`StoredTrustChain`); Linkerd only names it: a root
``root.linkerd.cluster.local`` and an issuer ``identity.linkerd.cluster.local``, as `linkerd
install` and Linkerd's step-cli instructions make them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.kit.certificate_checks import PemLocation
from adapters.kit.certificate_store import StoredTrustChain
from adapters.kit.certificates import TrustChain

TRUST_CHAIN = StoredTrustChain(
    secret_name="meshplane-linkerd-identity",
    anchor_name="root.linkerd.cluster.local",
    issuer_name="identity.linkerd.cluster.local",
)
"""Generated on the first install, reused by re-installs and upgrades (deleted on uninstall)."""

TRUST_ROOTS = PemLocation(
    kind="ConfigMap", name="linkerd-identity-trust-roots", key="ca-bundle.crt"
)
"""Where the control plane publishes the trust anchor bundle."""
ISSUER = PemLocation(kind="Secret", name="linkerd-identity-issuer", key="crt.pem")
"""Where the identity controller reads its issuer certificate."""


def chart_values(chain: TrustChain) -> Mapping[str, Any]:
    """linkerd-control-plane values holding the anchor and the issuer (scheme linkerd.io/tls)."""
    return {
        "identityTrustAnchorsPEM": chain.anchor.certificate_pem,
        "identity": {
            "issuer": {
                "tls": {"crtPEM": chain.issuer.certificate_pem, "keyPEM": chain.issuer.key_pem}
            }
        },
    }
