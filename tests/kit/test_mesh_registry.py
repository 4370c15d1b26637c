"""Meshes are found through the `meshplane.meshes` entry points: a new mesh is one folder plus
one entry point, and nothing in the kit, the sandbox or the tests lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapters.kit.process.mesh_registry import UnknownMesh, known_meshes, load_declaration
from meshplane_cli.main import main

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_mesh_folder_is_registered_under_its_declared_name() -> None:
    folders = sorted(p.parent.name for p in (PROJECT_ROOT / "adapters").glob("*/declaration.py"))
    assert folders, "no mesh folders found"
    assert list(known_meshes()) == folders
    for mesh in known_meshes():
        assert load_declaration(mesh).mesh == mesh


def test_an_import_string_names_an_unregistered_declaration() -> None:
    assert load_declaration("tests.adapters.toy.toymesh:DECLARATION").mesh == "toymesh"
    with pytest.raises(UnknownMesh, match="is not a MeshDeclaration"):
        load_declaration("tests.adapters.toy.toymesh:CONTROL_PLANE_NAMESPACE")


def test_a_misspelt_mesh_gets_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapter", "istoi"]) == 2
    err = capsys.readouterr().err
    assert "unknown mesh 'istoi' (did you mean 'istio'?)" in err
    assert "known meshes: consul, istio, linkerd" in err


def _third_party_site(tmp_path: Path) -> Path:
    """A site directory holding only the metadata of a distribution that registers toymesh."""
    site = tmp_path / "site"
    info = site / "toymesh_adapter-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toymesh-adapter\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[meshplane.meshes]\ntoymesh = tests.adapters.toy.toymesh:DECLARATION\n"
    )
    return site


def _with_third_party_mesh(tmp_path: Path) -> dict[str, str]:
    """The environment of a process that sees the third-party distribution."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(_third_party_site(tmp_path)), "."]))


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meshplane_cli.main", *args],
        cwd=PROJECT_ROOT,
        env=_with_third_party_mesh(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_an_installed_third_party_mesh_is_offered_everywhere(tmp_path: Path) -> None:
    """Installing a distribution with the entry point is all it takes: `meshplane adapter`
    accepts the name and the sandbox tries it, with no edit to our code."""
    adapter_help = _run(tmp_path, "adapter", "--help")
    assert adapter_help.returncode == 0, adapter_help.stderr
    assert "toymesh" in adapter_help.stdout
    up_help = _run(tmp_path, "up", "--help")
    assert up_help.returncode == 0, up_help.stderr
    assert "toymesh" in " ".join(up_help.stdout.split())


def test_a_registered_third_party_mesh_starts_by_name(tmp_path: Path) -> None:
    state = tmp_path / "state"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshplane_cli.main",
            "adapter",
            "toymesh",
            "--executor-factory",
            "tests.kit.toy_adapter:executor_factory",
            "--port",
            "0",
            "--state-dir",
            str(state),
        ],
        cwd=PROJECT_ROOT,
        env=_with_third_party_mesh(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, process.stderr.read() if process.stderr else "no output"
        assert json.loads(line)["mesh"] == "toymesh"
    finally:
        process.terminate()
        process.communicate(timeout=30)
