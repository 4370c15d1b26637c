"""The kit's public surface is pinned: mesh folders and integrators build on exactly these names."""

from __future__ import annotations

import subprocess
import sys

from adapters import kit
from adapters.kit.process.mesh_registry import known_meshes

EXPECTED = {
    "AdapterSettings", "Category", "Check", "ServiceIndex", "CertifiedKey",
    "StoredServingCertificates", "ChartSource", "CheckContext", "ClusterReader", "ErrorDetail",
    "Finding", "InjectionMarker", "KubeObject", "ManifestSource", "MarkerField", "MeshDeclaration",
    "ObjectRef", "ObjectsSource", "OperationSpec", "Ownership", "Parameter", "PemLocation",
    "PlanContext", "RunningAdapter", "STANDARD_CAPABILITIES", "Severity", "Source",
    "StoredTrustChain", "TrustChain", "all_of", "crds_established", "custom_operation",
    "deployments_ready", "generate_trust_chain", "injected_namespaces_have_sidecars",
    "install_operation", "integer_parameter", "duration_parameter", "parse_integer",
    "namespace_annotations",
    "namespace_injection_operation", "namespace_labels", "namespaced_object", "run_adapter",
    "sample_application", "start_adapter", "trust_chain_stored", "trust_chain_valid",
    "validate_operation", "webhooks_present", "workloads_ready",
}  # fmt: skip


def test_all_is_exactly_the_pinned_surface() -> None:
    assert set(kit.__all__) == EXPECTED
    assert len(kit.__all__) == len(set(kit.__all__))


def test_every_public_name_resolves() -> None:
    for name in kit.__all__:
        assert getattr(kit, name) is not None, name


def test_unknown_names_raise_attribute_error() -> None:
    try:
        kit.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("unknown kit attribute resolved")


def test_importing_a_kit_module_does_not_load_helm_grpc_or_kubernetes() -> None:
    code = (
        "import sys, adapters.kit.declare.mesh; "
        "print(sorted(m for m in ('helm_python', 'grpc', 'kubernetes') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_mesh_folders_import_only_the_kits_public_names() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    folders = [root / "adapters" / mesh for mesh in known_meshes()]
    offenders = []
    for path in [p for folder in folders for p in folder.glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("adapters.kit."):
                offenders.append(f"{path.relative_to(root)}:{node.lineno} {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module == "adapters.kit":
                offenders += [
                    f"{path.relative_to(root)}:{node.lineno} {alias.name}"
                    for alias in node.names
                    if alias.name not in kit.__all__
                ]
    assert offenders == []
