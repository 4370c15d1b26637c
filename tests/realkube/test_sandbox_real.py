"""`meshplane up --kube real`: the sandbox on the real control plane instead of kubesim."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from coordinator.sandbox.settings import SandboxSettings
from coordinator.sandbox.up import Sandbox
from meshplane_cli.main import main
from tests.coordinator.test_sandbox_supervision import _free_port_block
from tests.plugins.realkube import require_realkube
from tests.realkube.test_kube_up import processes_mentioning

pytestmark = pytest.mark.realkube


@pytest.mark.timeout(600)
async def test_up_with_the_real_control_plane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_realkube()
    data = tmp_path / "data"
    settings = SandboxSettings(
        data_dir=data, port_base=_free_port_block(3), meshes=("istio",), kube="real"
    )
    sandbox = Sandbox(settings)
    await sandbox.start()
    try:
        assert sandbox.kubernetes_url == f"https://127.0.0.1:{settings.kubesim_port}"
        assert "real control plane" in sandbox.summary()
        kube = next(child for child in sandbox.children if child.name == "kube")
        assert "kube-apiserver" in set(processes_mentioning(str(data / "kube")).values())
        # The adapter reads the mesh's status from the real cluster.
        argv = ["status", "istio", "-o", "json", "--coordinator", sandbox.coordinator_address]
        assert await asyncio.to_thread(main, argv) == 0, capsys.readouterr().err
        line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("{"))
        assert "istio" in json.loads(line).get("mesh", "istio")
        assert kube.process.returncode is None
    finally:
        await sandbox.stop()
    assert processes_mentioning(str(data)) == {}
