"""What `validate` looks at in a Linkerd mesh, in the spirit of `linkerd check`.

CRDs established, the control plane's Deployments ready, the proxy injector's webhook in place,
the identity certificates present with the issuer chaining to the trust anchor and not near
expiry (and the anchor the one install keeps, so the next install does not rotate it), and the
namespaces annotated for injection with their pods meshed. Every block is the kit's; this module
only says what Linkerd calls things.
"""

from __future__ import annotations

from adapters.kit import (
    Check,
    InjectionMarker,
    MarkerField,
    all_of,
    crds_established,
    deployments_ready,
    injected_namespaces_have_sidecars,
    trust_chain_stored,
    trust_chain_valid,
    webhooks_present,
)
from adapters.linkerd.identity import ISSUER, TRUST_CHAIN, TRUST_ROOTS

INJECTION = InjectionMarker(field=MarkerField.ANNOTATION, key="linkerd.io/inject", value="enabled")
PROXY_CONTAINER = "linkerd-proxy"
CONTROL_PLANE_DEPLOYMENTS = ("linkerd-identity", "linkerd-destination", "linkerd-proxy-injector")

VALIDATE: Check = all_of(
    crds_established("linkerd.io", what="Linkerd"),
    deployments_ready(*CONTROL_PLANE_DEPLOYMENTS),
    webhooks_present(
        "MutatingWebhookConfiguration",
        "linkerd.io/control-plane-component=proxy-injector",
        what="proxy injection",
    ),
    trust_chain_valid(anchor=TRUST_ROOTS, issuer=ISSUER),
    trust_chain_stored(TRUST_CHAIN, anchor=TRUST_ROOTS),
    injected_namespaces_have_sidecars(
        INJECTION, container=PROXY_CONTAINER, opt_out=("linkerd.io/inject", "disabled")
    ),
)
"""The `validate` operation's findings, in the order they are reported."""
