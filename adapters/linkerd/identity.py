"""Linkerd's certificates: where they are stored and which chart values receive them.

The kit generates and keeps them (`StoredTrustChain`, `StoredServingCertificates`); Linkerd only
names them: a root ``root.linkerd.cluster.local`` and an issuer
``identity.linkerd.cluster.local``, as `linkerd install` and Linkerd's step-cli instructions make
them, and one serving certificate per admission webhook (which the chart would otherwise
regenerate at every render, rewriting webhooks and restarting Deployments on each re-install).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from adapters.kit import (
    CertifiedKey,
    PemLocation,
    StoredServingCertificates,
    StoredTrustChain,
    TrustChain,
)

TRUST_CHAIN = StoredTrustChain(
    secret_name="meshplane-linkerd-identity",
    anchor_name="root.linkerd.cluster.local",
    issuer_name="identity.linkerd.cluster.local",
)
"""Generated on the first install, reused by re-installs and upgrades (deleted on uninstall)."""

WEBHOOK_CERTIFICATES = StoredServingCertificates(
    secret_name="meshplane-linkerd-webhooks",
    services=("linkerd-proxy-injector", "linkerd-sp-validator", "linkerd-policy-validator"),
)
WEBHOOK_VALUES: dict[str, str] = {
    "proxyInjector": "linkerd-proxy-injector",
    "profileValidator": "linkerd-sp-validator",
    "policyValidator": "linkerd-policy-validator",
}
"""Chart values section → the webhook Service its certificate is for."""

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


def webhook_values(certificates: Mapping[str, CertifiedKey]) -> Mapping[str, Any]:
    """Each webhook's serving certificate, key and caBundle (the same self-signed PEM)."""
    return {
        section: {
            "crtPEM": certificates[service].certificate_pem,
            "keyPEM": certificates[service].key_pem,
            "caBundle": certificates[service].certificate_pem,
        }
        for section, service in WEBHOOK_VALUES.items()
    }
