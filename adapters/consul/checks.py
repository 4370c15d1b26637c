"""What `validate` looks at in a Consul service mesh.

CRDs established, the servers (a StatefulSet) and the connect injector ready, the injector's
webhook in place, and the namespaces labelled for injection with their pods meshed (Consul 1.x
injects the ``consul-dataplane`` sidecar). Every block is the kit's.
"""

from __future__ import annotations

from adapters.consul.values import INJECTION
from adapters.kit import (
    Check,
    all_of,
    crds_established,
    injected_namespaces_have_sidecars,
    webhooks_present,
    workloads_ready,
)

SIDECAR_CONTAINER = "consul-dataplane"

VALIDATE: Check = all_of(
    crds_established("consul.hashicorp.com", what="Consul"),
    workloads_ready("StatefulSet", "consul-server"),
    workloads_ready("Deployment", "consul-connect-injector", "consul-webhook-cert-manager"),
    webhooks_present(
        "MutatingWebhookConfiguration",
        "app=consul,component=connect-injector",
        what="connect injection",
    ),
    injected_namespaces_have_sidecars(
        INJECTION, container=SIDECAR_CONTAINER, opt_out=(INJECTION.key, "false")
    ),
)
"""The `validate` operation's findings, in the order they are reported."""
