"""The Consul adapter: its catalogue, and what each operation applies.

Everything here is data; the kit plans, applies, waits and reports. Install renders the `consul`
chart at the requested version (its `test` hook Pod is not installed; its hook Jobs run and
are waited on by the kit).
"""

from __future__ import annotations

from adapters.consul import checks, samples, values
from adapters.kit import (
    STANDARD_CAPABILITIES,
    ChartSource,
    MeshDeclaration,
    ObjectsSource,
    Parameter,
    custom_operation,
    install_operation,
    integer_parameter,
    namespace_injection_operation,
    sample_application,
    validate_operation,
)

CONTROL_PLANE_NAMESPACE = "consul"
SAMPLES_NAMESPACE = "default"

INSTALL = install_operation(
    "Consul",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    parameters=(
        Parameter(
            name=values.SERVER_REPLICAS_PARAMETER,
            description="Consul servers (1 for trying it out; 3 or 5 to tolerate failures)",
            default=values.DEFAULT_SERVER_REPLICAS,
            check=integer_parameter(minimum=1, maximum=values.MAX_SERVER_REPLICAS),
        ),
    ),
    sources=(ChartSource(chart="consul", release="consul", values=values.chart_values),),
)

DECLARATION = MeshDeclaration(
    mesh="consul",
    default_port=10002,
    chart_repository="https://helm.releases.hashicorp.com",
    manifests_url="https://raw.githubusercontent.com/",
    default_namespace=CONTROL_PLANE_NAMESPACE,
    status_release=INSTALL.release_name,
    injection_label=values.INJECTION.as_label,
    capabilities=STANDARD_CAPABILITIES,
    operations=(
        INSTALL,
        sample_application(
            "static-server",
            description="Deploy Consul's static-server (http-echo behind a Service)",
            default_namespace=SAMPLES_NAMESPACE,
            parameters=(
                Parameter(
                    name=samples.TEXT_PARAMETER,
                    description="What static-server answers every request with",
                    default="hello world",
                ),
            ),
            sources=(ObjectsSource(build=samples.static_server),),
        ),
        sample_application(
            "static-client",
            description="Deploy Consul's static-client with static-server as its upstream",
            default_namespace=SAMPLES_NAMESPACE,
            parameters=(
                Parameter(
                    name=samples.UPSTREAM_PORT_PARAMETER,
                    description="Local port the client reaches static-server on",
                    default="1234",
                    check=integer_parameter(minimum=1024, maximum=65535),
                ),
            ),
            sources=(ObjectsSource(build=samples.static_client),),
        ),
        sample_application(
            "bookinfo",
            description="Deploy Bookinfo",
            default_namespace=SAMPLES_NAMESPACE,
            file="bookinfo.yaml",
            upstream="istio/istio/1.30.3/samples/bookinfo/platform/kube/bookinfo.yaml",
        ),
        sample_application(
            "httpbin",
            description="Deploy the httpbin sample",
            default_namespace=SAMPLES_NAMESPACE,
            file="httpbin.yaml",
            upstream="istio/istio/1.30.3/samples/httpbin/httpbin.yaml",
        ),
        namespace_injection_operation(values.INJECTION, default_namespace=SAMPLES_NAMESPACE),
        validate_operation(
            checks.VALIDATE,
            description="Check CRDs, servers, connect injector and injected namespaces; "
            "findings as events",
            default_namespace=CONTROL_PLANE_NAMESPACE,
        ),
        custom_operation(default_namespace=SAMPLES_NAMESPACE),
    ),
)
