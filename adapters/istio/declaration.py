"""The Istio adapter: its catalogue, and what each operation applies.

Everything here is data; the kit plans, applies, waits and reports.
"""

from __future__ import annotations

from adapters.istio import checks, objects, values
from adapters.kit import (
    STANDARD_CAPABILITIES,
    Category,
    ChartSource,
    ManifestSource,
    MeshDeclaration,
    ObjectsSource,
    OperationSpec,
    Parameter,
    PlanContext,
    custom_operation,
    install_operation,
    integer_parameter,
    namespace_injection_operation,
    sample_application,
    validate_operation,
)

CONTROL_PLANE_NAMESPACE = "istio-system"
SAMPLES_NAMESPACE = "default"


async def istio_crds_installed(ctx: PlanContext) -> bool:
    """Istio's networking CRDs are served, so Gateways and VirtualServices can be applied."""
    return await ctx.cluster.has_kind(objects.NETWORKING, "Gateway")


def _addon(name: str) -> OperationSpec:
    return OperationSpec(
        id=name,
        category=Category.CONFIGURE,
        description=f"Install the {name} add-on from Istio's samples",
        default_namespace=CONTROL_PLANE_NAMESPACE,
        sources=(
            ManifestSource(file=f"addons/{name}.yaml", upstream=f"samples/addons/{name}.yaml"),
        ),
    )


def _mtls(mode: str) -> OperationSpec:
    return OperationSpec(
        id=f"mtls-{mode.lower()}",
        category=Category.CONFIGURE,
        description=f"Set the namespace's mutual TLS mode to {mode} (PeerAuthentication)",
        default_namespace=SAMPLES_NAMESPACE,
        sources=(ObjectsSource(build=objects.peer_authentication(mode)),),
    )


def _weight(version: str) -> Parameter:
    return Parameter(
        name=objects.WEIGHT_PARAMETERS[version],
        description=f"Percent of reviews traffic to {version} (the three weights sum to 100)",
        default=objects.DEFAULT_WEIGHTS[version],
        check=integer_parameter(minimum=0, maximum=objects.PERCENT_MAX),
    )


INSTALL = install_operation(
    "Istio",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    parameters=(
        Parameter(
            name="profile",
            description="minimal: istiod only; default: istiod and an ingress gateway; demo: "
            "demo settings with ingress and egress gateways",
            default=values.DEFAULT_PROFILE,
            allowed=values.PROFILES,
        ),
    ),
    sources=(
        # Istio marks its CRDs resource-policy: keep. The kit keeps every release's CRDs on
        # delete anyway, unless the request sends purge-crds: then they go, as with
        # `istioctl uninstall --purge`, so the chart's own keep is not applied here.
        ChartSource(
            chart="base", release="istio-base", values=values.base_values, purge_on_delete=True
        ),
        ChartSource(chart="istiod", release="istiod", values=values.istiod_values),
        ChartSource(
            chart="gateway",
            release="istio-ingressgateway",
            values=values.ingress_gateway_values,
            when=values.has_gateways,
        ),
        ChartSource(
            chart="gateway",
            release="istio-egressgateway",
            values=values.egress_gateway_values,
            when=values.has_egress_gateway,
        ),
    ),
)

DECLARATION = MeshDeclaration(
    mesh="istio",
    default_port=10000,
    chart_repository="https://istio-release.storage.googleapis.com/charts",
    manifests_url="https://raw.githubusercontent.com/istio/istio/{version}/",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    status_release=INSTALL.release_name,
    injection_label=checks.INJECTION.as_label,
    capabilities=STANDARD_CAPABILITIES,
    operations=(
        INSTALL,
        sample_application(
            "bookinfo",
            description="Deploy Bookinfo (and its Gateway/VirtualService when Istio is installed)",
            default_namespace=SAMPLES_NAMESPACE,
            file="bookinfo.yaml",
            upstream="samples/bookinfo/platform/kube/bookinfo.yaml",
            sources=(
                ManifestSource(
                    file="apps/bookinfo-gateway.yaml",
                    upstream="samples/bookinfo/networking/bookinfo-gateway.yaml",
                    when=istio_crds_installed,
                ),
            ),
        ),
        sample_application(
            "httpbin",
            description="Deploy the httpbin sample",
            default_namespace=SAMPLES_NAMESPACE,
            file="httpbin.yaml",
            upstream="samples/httpbin/httpbin.yaml",
        ),
        namespace_injection_operation(
            checks.INJECTION, default_namespace=SAMPLES_NAMESPACE, operation_id="label-namespace"
        ),
        _mtls("STRICT"),
        _mtls("PERMISSIVE"),
        _mtls("DISABLE"),
        OperationSpec(
            id="deny-all",
            category=Category.CONFIGURE,
            description="Deny every request in the namespace (AuthorizationPolicy, empty spec)",
            default_namespace=SAMPLES_NAMESPACE,
            sources=(ObjectsSource(build=objects.deny_all),),
        ),
        OperationSpec(
            id="bookinfo-route-v1",
            category=Category.CONFIGURE,
            description="Route all Bookinfo traffic to v1 (VirtualServices and DestinationRules)",
            default_namespace=SAMPLES_NAMESPACE,
            sources=(
                ManifestSource(
                    file="apps/bookinfo-destination-rule-all.yaml",
                    upstream="samples/bookinfo/networking/destination-rule-all.yaml",
                ),
                ManifestSource(
                    file="apps/bookinfo-virtual-service-all-v1.yaml",
                    upstream="samples/bookinfo/networking/virtual-service-all-v1.yaml",
                ),
            ),
        ),
        OperationSpec(
            id="bookinfo-canary",
            category=Category.CONFIGURE,
            description="Split reviews traffic across v1/v2/v3 by weight",
            default_namespace=SAMPLES_NAMESPACE,
            parameters=tuple(_weight(v) for v in objects.REVIEWS_VERSIONS),
            sources=(ObjectsSource(build=objects.reviews_canary),),
            request_check=objects.canary_weights_problems,
        ),
        OperationSpec(
            id="bookinfo-fault",
            category=Category.CONFIGURE,
            description="Inject a delay and/or HTTP 500 aborts into ratings traffic",
            default_namespace=SAMPLES_NAMESPACE,
            parameters=(
                Parameter(
                    name="delay-ms",
                    description="Fixed delay added to every ratings request, in ms (0: none)",
                    default="7000",
                    check=integer_parameter(minimum=0, maximum=objects.DELAY_MS_MAX),
                ),
                Parameter(
                    name="abort-percent",
                    description="Percent of ratings requests answered with HTTP 500 (0: none)",
                    default="0",
                    check=integer_parameter(minimum=0, maximum=objects.PERCENT_MAX),
                ),
            ),
            sources=(ObjectsSource(build=objects.ratings_fault),),
        ),
        _addon("prometheus"),
        _addon("grafana"),
        _addon("kiali"),
        _addon("jaeger"),
        validate_operation(
            checks.VALIDATE,
            description="Check CRDs, istiod, webhooks, sidecars and routing; findings as events",
            default_namespace=CONTROL_PLANE_NAMESPACE,
        ),
        custom_operation(default_namespace=SAMPLES_NAMESPACE),
    ),
)
