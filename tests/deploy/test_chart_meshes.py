"""The chart's adapter defaults come from the declarations: files/meshes.yaml is what `meshplane
chart-meshes` prints for the registered meshes, and an adapter needs no values entry but
``enabled``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapters.chart_meshes import CHART_FILE, meshes_document
from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.plan.rendering import ChartRenderError
from adapters.kit.process.mesh_registry import known_meshes, load_declaration
from meshplane_cli.main import main
from tests.deploy.chart import (
    CHART,
    committed_role,
    container,
    env_of,
    find,
    rbac_file,
    render,
)
from tests.fixtures_paths import PROJECT_ROOT

REGENERATE = f"meshplane chart-meshes > {CHART_FILE}"


def _registered() -> list[MeshDeclaration]:
    return [load_declaration(mesh) for mesh in known_meshes()]


def _adapter(mesh: str) -> str:
    return f"mp-meshplane-adapter-{mesh}"


def test_the_committed_file_lists_every_registered_mesh_with_its_declared_port() -> None:
    committed = (PROJECT_ROOT / CHART_FILE).read_text(encoding="utf-8")
    assert committed == meshes_document(_registered()), (
        f"{CHART_FILE} is not what the registered meshes declare: run `{REGENERATE}`"
    )


def test_every_registered_mesh_has_its_generated_role() -> None:
    missing = [
        f"meshplane rbac {mesh} > {rbac_file(mesh).relative_to(PROJECT_ROOT)}"
        for mesh in known_meshes()
        if not rbac_file(mesh).is_file()
    ]
    assert missing == [], f"generate the missing roles: {'; '.join(missing)}"


def test_meshplane_chart_meshes_prints_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chart-meshes"]) == 0
    printed = capsys.readouterr().out
    assert printed == meshes_document(_registered())
    for declaration in _registered():
        assert f"  {declaration.mesh}:\n    port: {declaration.default_port}\n" in printed


def test_the_document_follows_the_declarations_not_a_list() -> None:
    toy = MeshDeclaration(
        mesh="toy",
        default_port=10009,
        chart_repository="unused",
        manifests_url="unused",
        default_namespace="toy",
        operations=(),
    )
    document = meshes_document([*_registered(), toy])
    assert "  toy:\n    port: 10009\n" in document
    assert document != meshes_document(_registered())


@pytest.mark.parametrize("declaration", _registered(), ids=lambda d: d.mesh)
async def test_enabling_a_registered_mesh_gives_it_its_declared_port(
    declaration: MeshDeclaration,
) -> None:
    objects = (await render({"adapters": {declaration.mesh: {"enabled": True}}})).objects
    name = _adapter(declaration.mesh)
    (port,) = find(objects, "Service", name)["spec"]["ports"]
    assert port["port"] == declaration.default_port
    deployment = find(objects, "Deployment", name)
    assert env_of(deployment)["MESHPLANE_ADAPTER_PORT"] == str(declaration.default_port)
    assert {
        "name": "grpc",
        "containerPort": declaration.default_port,
        "protocol": "TCP",
    } in container(deployment)["ports"]


async def test_a_new_mesh_needs_only_its_generated_files_and_enabled(tmp_path: Path) -> None:
    """What a new mesh folder plus entry point gives the chart (its two generated files):
    enabling it renders an adapter on its declared port, with no values.yaml entry."""
    chart = tmp_path / "meshplane"
    shutil.copytree(CHART, chart)
    files = chart / "files"
    with (files / "meshes.yaml").open("a", encoding="utf-8") as out:
        out.write("  toy:\n    port: 10009\n")
    role = committed_role("istio")
    (files / "rbac-toy.yaml").write_text(
        (CHART / "files" / "rbac-istio.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    objects = (await render({"adapters": {"toy": {"enabled": True}}}, chart=chart)).objects
    (port,) = find(objects, "Service", _adapter("toy"))["spec"]["ports"]
    assert port["port"] == 10009
    assert find(objects, "ClusterRole", f"meshplane-{_adapter('toy')}")["rules"] == role["rules"]


async def test_per_mesh_values_override_the_declared_port_and_the_shared_defaults() -> None:
    values = {
        "adapterDefaults": {
            "chartRepo": "https://charts.internal.example/all",
            "mirror": {"volume": {"persistentVolumeClaim": {"claimName": "mirror"}}},
        },
        "adapters": {
            "istio": {"port": 12000, "chartRepo": "https://charts.internal.example/istio"},
            "linkerd": {"enabled": True, "mirror": {"enabled": True}},
        },
    }
    objects = (await render(values)).objects
    istio = env_of(find(objects, "Deployment", _adapter("istio")))
    assert istio["MESHPLANE_ADAPTER_PORT"] == "12000"
    assert istio["MESHPLANE_ADAPTER_CHART_REPO"] == "https://charts.internal.example/istio"
    assert "MESHPLANE_ADAPTER_MIRROR" not in istio
    linkerd_deployment = find(objects, "Deployment", _adapter("linkerd"))
    linkerd = env_of(linkerd_deployment)
    assert linkerd["MESHPLANE_ADAPTER_CHART_REPO"] == "https://charts.internal.example/all"
    assert linkerd["MESHPLANE_ADAPTER_MIRROR"] == "/var/lib/meshplane/mirror"
    volumes = linkerd_deployment["spec"]["template"]["spec"]["volumes"]
    assert {"name": "mirror", "persistentVolumeClaim": {"claimName": "mirror"}} in volumes


async def test_a_mesh_the_chart_does_not_know_needs_a_port() -> None:
    with pytest.raises(ChartRenderError, match=r"adapters.toy.port is needed.*chart-meshes"):
        await render({"adapters": {"toy": {"enabled": True}}})
