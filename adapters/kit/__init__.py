"""The adapter kit's public surface: what a mesh folder (ours or an integrator's) may use.

Mesh folders import only these names (`from adapters.kit import ...`); everything else in the kit
is machinery that may change. Names resolve lazily (PEP 562) so that importing one kit module,
or running an unrelated `meshplane` command, does not load Helm, gRPC and the Kubernetes client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.kit.adapter_server import (
        RunningAdapter,
        run_adapter,
        start_adapter,
    )
    from adapters.kit.builders import (
        duration_parameter,
        integer_parameter,
        namespace_annotations,
        namespace_labels,
        namespaced_object,
    )
    from adapters.kit.catalogue import (
        Category,
        ChartSource,
        Check,
        CheckContext,
        ClusterReader,
        Finding,
        ManifestSource,
        MeshDeclaration,
        ObjectsSource,
        OperationSpec,
        Ownership,
        Parameter,
        PlanContext,
        Source,
    )
    from adapters.kit.certificate_checks import (
        PemLocation,
        trust_chain_stored,
        trust_chain_valid,
    )
    from adapters.kit.certificate_store import (
        StoredServingCertificates,
        StoredTrustChain,
    )
    from adapters.kit.certificates import (
        CertifiedKey,
        TrustChain,
        generate_trust_chain,
    )
    from adapters.kit.injection import (
        InjectionMarker,
        MarkerField,
        injected_namespaces_have_sidecars,
        namespace_injection_operation,
    )
    from adapters.kit.objects import (
        KubeObject,
        ObjectRef,
    )
    from adapters.kit.operations import (
        ErrorDetail,
        Severity,
    )
    from adapters.kit.settings import (
        AdapterSettings,
    )
    from adapters.kit.standard_operations import (
        STANDARD_CAPABILITIES,
        custom_operation,
        install_operation,
        sample_application,
        validate_operation,
    )
    from adapters.kit.validation_checks import (
        ServiceIndex,
        all_of,
        crds_established,
        deployments_ready,
        webhooks_present,
        workloads_ready,
    )
    from serving.strict_numbers import parse_integer

_HOMES: dict[str, str] = {
    "StoredServingCertificates": "adapters.kit.certificate_store",
    "CertifiedKey": "adapters.kit.certificates",
    "ServiceIndex": "adapters.kit.validation_checks",
    "Check": "adapters.kit.catalogue",
    "Category": "adapters.kit.catalogue",
    "ChartSource": "adapters.kit.catalogue",
    "CheckContext": "adapters.kit.catalogue",
    "ClusterReader": "adapters.kit.catalogue",
    "Finding": "adapters.kit.catalogue",
    "ManifestSource": "adapters.kit.catalogue",
    "MeshDeclaration": "adapters.kit.catalogue",
    "ObjectsSource": "adapters.kit.catalogue",
    "OperationSpec": "adapters.kit.catalogue",
    "Ownership": "adapters.kit.catalogue",
    "Parameter": "adapters.kit.catalogue",
    "PlanContext": "adapters.kit.catalogue",
    "Source": "adapters.kit.catalogue",
    "KubeObject": "adapters.kit.objects",
    "ObjectRef": "adapters.kit.objects",
    "ErrorDetail": "adapters.kit.operations",
    "Severity": "adapters.kit.operations",
    "duration_parameter": "adapters.kit.builders",
    "integer_parameter": "adapters.kit.builders",
    "parse_integer": "serving.strict_numbers",
    "namespace_annotations": "adapters.kit.builders",
    "namespace_labels": "adapters.kit.builders",
    "namespaced_object": "adapters.kit.builders",
    "InjectionMarker": "adapters.kit.injection",
    "MarkerField": "adapters.kit.injection",
    "injected_namespaces_have_sidecars": "adapters.kit.injection",
    "namespace_injection_operation": "adapters.kit.injection",
    "STANDARD_CAPABILITIES": "adapters.kit.standard_operations",
    "custom_operation": "adapters.kit.standard_operations",
    "install_operation": "adapters.kit.standard_operations",
    "sample_application": "adapters.kit.standard_operations",
    "validate_operation": "adapters.kit.standard_operations",
    "all_of": "adapters.kit.validation_checks",
    "crds_established": "adapters.kit.validation_checks",
    "deployments_ready": "adapters.kit.validation_checks",
    "webhooks_present": "adapters.kit.validation_checks",
    "workloads_ready": "adapters.kit.validation_checks",
    "TrustChain": "adapters.kit.certificates",
    "generate_trust_chain": "adapters.kit.certificates",
    "StoredTrustChain": "adapters.kit.certificate_store",
    "PemLocation": "adapters.kit.certificate_checks",
    "trust_chain_stored": "adapters.kit.certificate_checks",
    "trust_chain_valid": "adapters.kit.certificate_checks",
    "AdapterSettings": "adapters.kit.settings",
    "run_adapter": "adapters.kit.adapter_server",
    "start_adapter": "adapters.kit.adapter_server",
    "RunningAdapter": "adapters.kit.adapter_server",
}

__all__ = [
    "STANDARD_CAPABILITIES",
    "AdapterSettings",
    "Category",
    "CertifiedKey",
    "ChartSource",
    "Check",
    "CheckContext",
    "ClusterReader",
    "ErrorDetail",
    "Finding",
    "InjectionMarker",
    "KubeObject",
    "ManifestSource",
    "MarkerField",
    "MeshDeclaration",
    "ObjectRef",
    "ObjectsSource",
    "OperationSpec",
    "Ownership",
    "Parameter",
    "PemLocation",
    "PlanContext",
    "RunningAdapter",
    "ServiceIndex",
    "Severity",
    "Source",
    "StoredServingCertificates",
    "StoredTrustChain",
    "TrustChain",
    "all_of",
    "crds_established",
    "custom_operation",
    "deployments_ready",
    "duration_parameter",
    "generate_trust_chain",
    "injected_namespaces_have_sidecars",
    "install_operation",
    "integer_parameter",
    "namespace_annotations",
    "namespace_injection_operation",
    "namespace_labels",
    "namespaced_object",
    "parse_integer",
    "run_adapter",
    "sample_application",
    "start_adapter",
    "trust_chain_stored",
    "trust_chain_valid",
    "validate_operation",
    "webhooks_present",
    "workloads_ready",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines `name` on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
