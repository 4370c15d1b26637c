"""The Linkerd adapter: its catalogue, and what each operation applies.

Everything here is data; the kit plans, applies, waits and reports. Install renders
`linkerd-crds` then `linkerd-control-plane`, the latter with identity certificates the kit
generates once and keeps in Secrets of the release (so upgrades keep the trust anchor, and a
re-install of the same version changes nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from adapters.kit import (
    STANDARD_CAPABILITIES,
    ChartSource,
    MeshDeclaration,
    ObjectsSource,
    Parameter,
    PlanContext,
    custom_operation,
    install_operation,
    integer_parameter,
    namespace_injection_operation,
    parse_integer,
    sample_application,
    validate_operation,
)
from adapters.linkerd import checks, identity

CONTROL_PLANE_NAMESPACE = "linkerd"
SAMPLES_NAMESPACE = "default"
REPLICAS_PARAMETER = "controller-replicas"
MAX_REPLICAS = 5


def heartbeat_schedule(trust_anchor_pem: str) -> str:
    """The heartbeat CronJob's daily schedule, fixed by the install's trust anchor.

    Left unset, the chart schedules it from the time of rendering (`now` + 10 minutes), so
    every render crossing a minute changes the CronJob and a re-install is no longer a no-op.
    A time derived from the anchor, which installs and upgrades keep, is as spread across
    clusters as upstream's and the same on every render.
    """
    minute_of_day = (
        int.from_bytes(hashlib.sha256(trust_anchor_pem.strip().encode()).digest()[:4]) % 1440
    )
    return f"{minute_of_day % 60} {minute_of_day // 60} * * *"


async def control_plane_values(ctx: PlanContext) -> Mapping[str, Any]:
    """Identity and webhook certificates (stored, or generated on first install); replicas;
    the heartbeat's schedule."""
    chain = await identity.TRUST_CHAIN.chain(ctx)
    webhooks = await identity.WEBHOOK_CERTIFICATES.certificates(ctx)
    replicas = parse_integer(
        ctx.parameters.get(REPLICAS_PARAMETER) or "1", minimum=1, maximum=MAX_REPLICAS
    )
    return {
        **identity.chart_values(chain),
        **identity.webhook_values(webhooks),
        "controllerReplicas": replicas,
        "heartbeatSchedule": heartbeat_schedule(chain.anchor.certificate_pem),
    }


INSTALL = install_operation(
    "Linkerd",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    parameters=(
        Parameter(
            name=REPLICAS_PARAMETER,
            description="Replicas of each control plane Deployment (3 for high availability)",
            default="1",
            check=integer_parameter(minimum=1, maximum=MAX_REPLICAS),
        ),
    ),
    sources=(
        ChartSource(chart="linkerd-crds", release="linkerd-crds"),
        ChartSource(
            chart="linkerd-control-plane",
            release="linkerd-control-plane",
            values=control_plane_values,
        ),
        ObjectsSource(build=identity.TRUST_CHAIN.secret()),
        ObjectsSource(build=identity.WEBHOOK_CERTIFICATES.secret()),
    ),
)

DECLARATION = MeshDeclaration(
    mesh="linkerd",
    default_port=10001,
    chart_repository="https://helm.linkerd.io/edge",
    manifests_url="https://raw.githubusercontent.com/",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    status_release=INSTALL.release_name,
    injection_annotation=checks.INJECTION.as_annotation,
    capabilities=STANDARD_CAPABILITIES,
    operations=(
        INSTALL,
        sample_application(
            "emojivoto",
            description="Deploy Emojivoto (in its own namespace, emojivoto)",
            default_namespace="emojivoto",
            file="emojivoto.yaml",
            upstream="linkerd/website/HEAD/run.linkerd.io/public/emojivoto.yml",
        ),
        sample_application(
            "booksapp",
            description="Deploy the Books app (webapp, authors, books, traffic)",
            default_namespace="booksapp",
            file="booksapp.yaml",
            upstream="BuoyantIO/booksapp/HEAD/booksapp.yml",
        ),
        sample_application(
            "httpbin",
            description="Deploy the httpbin sample",
            default_namespace=SAMPLES_NAMESPACE,
            file="httpbin.yaml",
            upstream="istio/istio/1.30.3/samples/httpbin/httpbin.yaml",
        ),
        namespace_injection_operation(checks.INJECTION, default_namespace=SAMPLES_NAMESPACE),
        validate_operation(
            checks.VALIDATE,
            description="Check CRDs, control plane, proxy injector, identity certificates and "
            "injected namespaces (like `linkerd check`); findings as events",
            default_namespace=CONTROL_PLANE_NAMESPACE,
        ),
        custom_operation(default_namespace=SAMPLES_NAMESPACE),
    ),
)
