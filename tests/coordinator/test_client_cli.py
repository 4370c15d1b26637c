"""Client command details that need no coordinator: tables, usage errors, `up` refusing to start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from coordinator.client.output import format_table
from coordinator.sandbox.children import SandboxError
from coordinator.sandbox.settings import SandboxSettings
from coordinator.sandbox.up import Sandbox
from coordinator.server.assembly import build_coordinator
from coordinator.server.settings import CoordinatorSettings
from meshplane_cli.main import main
from serving.tls import TlsConfig
from tests.meshplane_command import meshplane
from tests.serving.certificates import CertificateAuthority


def test_tables_align_every_column_but_the_last() -> None:
    text = format_table(["MESH", "STATE", "NOTE"], [["istio", "SERVING", "ok"], ["x", "", "long"]])
    assert text.splitlines() == [
        "MESH   STATE    NOTE",
        "istio  SERVING  ok",
        "x               long",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["apply", "istio", "install", "--param", "novalue"], "is not KEY=VALUE"),
        (["apply", "istio", "custom", "-f", "/nonexistent/body.yaml"], "cannot read -f"),
        (["apply", "istio", "install", "--timeout", "0"], "--timeout must be positive"),
        (["apply", "istio", "custom"], "custom_body is empty; pass -f FILE"),
        (["history", "--limit", "0"], "--limit must be at least 1"),
        (["events", "--after", "-1"], "--after must not be negative"),
        (["adapters", "--coordinator", "10.1.2.3:10100"], "refusing plaintext"),
    ],
)
def test_usage_errors_exit_2_before_any_call(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 9 (discard) on loopback: a command that got as far as calling would exit 1 instead.
    code = main(argv if "--coordinator" in argv else [*argv, "--coordinator", "127.0.0.1:9"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_up_refuses_a_missing_mirror(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--data-dir", str(tmp_path), "--mirror", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_up_refuses_real_kube_with_a_kubeconfig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "up",
        "--kube",
        "real",
        "--kubeconfig",
        str(tmp_path / "k"),
        "--data-dir",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "drop --kubeconfig" in capsys.readouterr().err


async def test_up_reports_a_child_that_cannot_start_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        kubesim_port = int(taken.getsockname()[1])
        sandbox = Sandbox(
            SandboxSettings(
                data_dir=tmp_path,
                port_base=kubesim_port - 1,
                meshes=("istio",),
                stop_grace_seconds=5,
            )
        )
        with pytest.raises(SandboxError, match="kubesim exited with 1"):
            await sandbox.start()
    assert sandbox.children == []
    assert "cannot listen" in (tmp_path / "logs" / "kubesim.log").read_text()


async def test_commands_speak_mutual_tls(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path, "meshplane")
    server = ca.issue("coordinator", server=True)
    client = ca.issue("cli", server=False, organizations=("meshplane:viewers",))
    settings = CoordinatorSettings(
        port=0,
        data_dir=tmp_path / "data",
        tls=TlsConfig(
            cert_path=server.cert_path, key_path=server.key_path, client_ca_path=ca.cert_path
        ),
    )
    coordinator = build_coordinator(settings)
    address = await coordinator.start()
    try:
        trust = ["--coordinator", address, "--tls-ca", str(ca.cert_path)]
        mine = ["--tls-cert", str(client.cert_path), "--tls-key", str(client.key_path)]
        code, out, _ = await meshplane("adapters", "-o", "json", *trust, *mine)
        assert code == 0
        assert '"adapters": [], "coordinator_version": "0.1.0"}' in out
        # Without a client certificate the handshake is refused.
        code, _, err = await meshplane("adapters", "--call-timeout", "5", *trust)
        assert code == 4  # unavailable
        assert "UNAVAILABLE" in err
    finally:
        await coordinator.stop(0)
