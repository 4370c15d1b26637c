"""Catalogue entries every mesh declares the same way: install, samples, validate, custom.

A mesh folder says which charts its install renders, which sample files it offers and which
checks its validate runs; the shape of those entries (category, ownership, versioning, the custom
operation's parameter) is the kit's, so the adapters cannot drift apart.
"""

from __future__ import annotations

from adapters.kit.declare.checks import Check
from adapters.kit.declare.operations import Category, OperationSpec
from adapters.kit.declare.parameters import Parameter
from adapters.kit.declare.sources import Condition, ManifestSource, Source

__all__ = [
    "STANDARD_CAPABILITIES",
    "custom_operation",
    "install_operation",
    "sample_application",
    "validate_operation",
]

STANDARD_CAPABILITIES: tuple[str, ...] = (
    "custom-operation",
    "cancel",
    "mesh-status",
    "multi-cluster",
)
"""What every adapter on the kit offers (the kit implements each of them)."""


def install_operation(
    mesh_title: str,
    *,
    default_namespace: str,
    sources: tuple[Source, ...],
    parameters: tuple[Parameter, ...] = (),
) -> OperationSpec:
    """The INSTALL entry: ``sources`` at the requested mesh version; a newer version upgrades,
    delete uninstalls."""
    return OperationSpec(
        id="install",
        category=Category.INSTALL,
        description=f"Install, upgrade (a newer mesh_version) or uninstall (delete) {mesh_title}",
        default_namespace=default_namespace,
        parameters=parameters,
        sources=sources,
        uses_mesh_version=True,
    )


def sample_application(
    operation_id: str,
    *,
    description: str,
    default_namespace: str,
    file: str = "",
    upstream: str = "",
    when: Condition | None = None,
    parameters: tuple[Parameter, ...] = (),
    sources: tuple[Source, ...] = (),
) -> OperationSpec:
    """A SAMPLE_APPLICATION entry: one manifest ``file`` under the mirror's ``apps/`` (fetched
    from ``upstream`` under the declaration's manifests URL without a mirror), plus ``sources``
    built from ``parameters``.
    """
    manifest: tuple[Source, ...] = ()
    if file:
        manifest = (ManifestSource(file=f"apps/{file}", upstream=upstream, when=when),)
    return OperationSpec(
        id=operation_id,
        category=Category.SAMPLE_APPLICATION,
        description=description,
        default_namespace=default_namespace,
        parameters=parameters,
        sources=manifest + sources,
    )


def validate_operation(check: Check, *, description: str, default_namespace: str) -> OperationSpec:
    """The VALIDATE entry: runs ``check`` against the namespace the mesh is installed in."""
    return OperationSpec(
        id="validate",
        category=Category.VALIDATE,
        description=description,
        default_namespace=default_namespace,
        check=check,
        supports_delete=False,
    )


def custom_operation(*, default_namespace: str) -> OperationSpec:
    """The CUSTOM entry: apply (or delete) the request's YAML, as `object_policy` allows."""
    return OperationSpec(
        id="custom",
        category=Category.CUSTOM,
        description="Apply (or delete) the YAML in custom_body",
        default_namespace=default_namespace,
        custom=True,
    )
