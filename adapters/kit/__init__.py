"""The adapter kit's public surface: what a mesh folder (ours or an integrator's) may use.

Mesh folders import only these names (`from adapters.kit import ...`); everything else in the kit
is machinery that may change. Names resolve lazily (PEP 562) so that importing one kit module,
or running an unrelated `meshplane` command, does not load Helm, gRPC and the Kubernetes client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.kit.declare.builders import (
        duration_parameter,
        integer_parameter,
        namespace_annotations,
        namespace_labels,
        namespaced_object,
    )
    from adapters.kit.declare.certificate_checks import (
        PemLocation,
        trust_chain_stored,
        trust_chain_valid,
    )
    from adapters.kit.declare.certificate_store import (
        StoredServingCertificates,
        StoredTrustChain,
    )
    from adapters.kit.declare.certificates import (
        CertifiedKey,
        TrustChain,
        generate_trust_chain,
    )
    from adapters.kit.declare.checks import Check, CheckContext, Finding
    from adapters.kit.declare.cluster_reader import ClusterReader
    from adapters.kit.declare.injection import (
        InjectionMarker,
        MarkerField,
        injected_namespaces_have_sidecars,
        namespace_injection_operation,
    )
    from adapters.kit.declare.mesh import MeshDeclaration
    from adapters.kit.declare.operations import Category, OperationSpec, Ownership
    from adapters.kit.declare.parameters import Parameter
    from adapters.kit.declare.sources import (
        ChartSource,
        ManifestSource,
        ObjectsSource,
        PlanContext,
        Source,
    )
    from adapters.kit.declare.standard_operations import (
        STANDARD_CAPABILITIES,
        custom_operation,
        install_operation,
        sample_application,
        validate_operation,
    )
    from adapters.kit.declare.validation_checks import (
        ServiceIndex,
        all_of,
        crds_established,
        deployments_ready,
        webhooks_present,
        workloads_ready,
    )
    from adapters.kit.model.objects import (
        KubeObject,
        ObjectRef,
    )
    from adapters.kit.model.records import (
        ErrorDetail,
        Severity,
    )
    from adapters.kit.process.server import (
        RunningAdapter,
        run_adapter,
        start_adapter,
    )
    from adapters.kit.process.settings import (
        AdapterSettings,
    )
    from serving.strict_numbers import parse_integer

_HOMES: dict[str, str] = {
    "StoredServingCertificates": "adapters.kit.declare.certificate_store",
    "CertifiedKey": "adapters.kit.declare.certificates",
    "ServiceIndex": "adapters.kit.declare.validation_checks",
    "Check": "adapters.kit.declare.checks",
    "Category": "adapters.kit.declare.operations",
    "ChartSource": "adapters.kit.declare.sources",
    "CheckContext": "adapters.kit.declare.checks",
    "ClusterReader": "adapters.kit.declare.cluster_reader",
    "Finding": "adapters.kit.declare.checks",
    "ManifestSource": "adapters.kit.declare.sources",
    "MeshDeclaration": "adapters.kit.declare.mesh",
    "ObjectsSource": "adapters.kit.declare.sources",
    "OperationSpec": "adapters.kit.declare.operations",
    "Ownership": "adapters.kit.declare.operations",
    "Parameter": "adapters.kit.declare.parameters",
    "PlanContext": "adapters.kit.declare.sources",
    "Source": "adapters.kit.declare.sources",
    "KubeObject": "adapters.kit.model.objects",
    "ObjectRef": "adapters.kit.model.objects",
    "ErrorDetail": "adapters.kit.model.records",
    "Severity": "adapters.kit.model.records",
    "duration_parameter": "adapters.kit.declare.builders",
    "integer_parameter": "adapters.kit.declare.builders",
    "parse_integer": "serving.strict_numbers",
    "namespace_annotations": "adapters.kit.declare.builders",
    "namespace_labels": "adapters.kit.declare.builders",
    "namespaced_object": "adapters.kit.declare.builders",
    "InjectionMarker": "adapters.kit.declare.injection",
    "MarkerField": "adapters.kit.declare.injection",
    "injected_namespaces_have_sidecars": "adapters.kit.declare.injection",
    "namespace_injection_operation": "adapters.kit.declare.injection",
    "STANDARD_CAPABILITIES": "adapters.kit.declare.standard_operations",
    "custom_operation": "adapters.kit.declare.standard_operations",
    "install_operation": "adapters.kit.declare.standard_operations",
    "sample_application": "adapters.kit.declare.standard_operations",
    "validate_operation": "adapters.kit.declare.standard_operations",
    "all_of": "adapters.kit.declare.validation_checks",
    "crds_established": "adapters.kit.declare.validation_checks",
    "deployments_ready": "adapters.kit.declare.validation_checks",
    "webhooks_present": "adapters.kit.declare.validation_checks",
    "workloads_ready": "adapters.kit.declare.validation_checks",
    "TrustChain": "adapters.kit.declare.certificates",
    "generate_trust_chain": "adapters.kit.declare.certificates",
    "StoredTrustChain": "adapters.kit.declare.certificate_store",
    "PemLocation": "adapters.kit.declare.certificate_checks",
    "trust_chain_stored": "adapters.kit.declare.certificate_checks",
    "trust_chain_valid": "adapters.kit.declare.certificate_checks",
    "AdapterSettings": "adapters.kit.process.settings",
    "run_adapter": "adapters.kit.process.server",
    "start_adapter": "adapters.kit.process.server",
    "RunningAdapter": "adapters.kit.process.server",
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
