"""The Linkerd and Consul catalogues as the adapter CLI finds them and as clients see them."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.consul.declaration import DECLARATION as CONSUL
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category
from adapters.kit.declare.sources import ManifestSource
from adapters.kit.plan.manifest_fetching import ManifestLibrary
from adapters.kit.process.mesh_registry import load_declaration
from adapters.linkerd.declaration import DECLARATION as LINKERD

MESHES = [pytest.param(LINKERD, id="linkerd"), pytest.param(CONSUL, id="consul")]


@pytest.mark.parametrize("declaration", MESHES)
def test_the_adapter_cli_resolves_the_declaration(declaration: MeshDeclaration) -> None:
    assert load_declaration(declaration.mesh) is declaration


def test_ports_and_injection_fields() -> None:
    assert (LINKERD.default_port, CONSUL.default_port) == (10001, 10002)
    assert LINKERD.injection_annotation == ("linkerd.io/inject", "enabled")
    assert LINKERD.injection_label is None
    assert CONSUL.injection_label == ("consul.hashicorp.com/connect-inject", "true")
    assert CONSUL.injection_annotation is None


@pytest.mark.parametrize("declaration", MESHES)
def test_catalogue_shape(declaration: MeshDeclaration) -> None:
    categories = {spec.id: spec.category for spec in declaration.operations}
    assert categories["install"] is Category.INSTALL
    assert categories["validate"] is Category.VALIDATE
    assert categories["custom"] is Category.CUSTOM
    assert categories["inject-namespace"] is Category.CONFIGURE
    assert categories["httpbin"] is Category.SAMPLE_APPLICATION
    for spec in declaration.operations:
        assert spec.supports_delete == (spec.category is not Category.VALIDATE), spec.id


@pytest.mark.parametrize("declaration", MESHES)
def test_samples_have_an_upstream_location_without_a_mirror(
    declaration: MeshDeclaration, tmp_path: Path
) -> None:
    library = ManifestLibrary(upstream_url=declaration.manifests_url, cache_dir=tmp_path)
    for spec in declaration.operations:
        for source in spec.sources:
            if isinstance(source, ManifestSource):
                base, name = library.location(source, "1.0.0")
                assert base == "https://raw.githubusercontent.com/"
                assert name.endswith((".yaml", ".yml")) and name != source.file, spec.id
