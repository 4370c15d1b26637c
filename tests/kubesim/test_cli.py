"""`meshplane kubesim` as a process: prints URL and kubeconfig, TLS, state file, SIGTERM.

kubesim only: its command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import structlog
import yaml
from kubernetes import client, config

from kubesim.cli import configure_logging
from tests.kubesim.support import eventually, kubectl_binary


@contextmanager
def kubesim_process(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshplane_cli.main",
            "kubesim",
            "--port",
            "0",
            "--kubeconfig-out",
            str(kubeconfig),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        url_line = proc.stdout.readline()
        config_line = proc.stdout.readline()
        assert url_line.startswith("kubesim serving at "), (url_line, proc.stderr)
        assert config_line.strip() == f"kubeconfig: {kubeconfig}"
        yield url_line.split()[-1], kubeconfig
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert code == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    with kubesim_process(tmp_path, "--ready-delay", "0") as (url, kubeconfig):
        assert url.startswith("http://127.0.0.1:")
        loaded = yaml.safe_load(kubeconfig.read_text())
        assert loaded["clusters"][0]["cluster"]["server"] == url
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            assert client.VersionApi(api).get_code().major == "1"


def test_tls_with_generated_ca(tmp_path: Path) -> None:
    with kubesim_process(tmp_path, "--tls") as (url, kubeconfig):
        assert url.startswith("https://")
        cluster = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]
        assert cluster["certificate-authority-data"]
        with config.new_client_from_config(config_file=str(kubeconfig)) as api:
            names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
            assert "kube-system" in names
        kubectl = subprocess.run(
            [
                kubectl_binary(),
                f"--kubeconfig={kubeconfig}",
                f"--cache-dir={tmp_path / 'c'}",
                "get",
                "namespace",
                "kube-system",
                "-o",
                "name",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert kubectl.stdout.strip() == "namespace/kube-system", kubectl.stderr


def test_state_survives_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    with (
        kubesim_process(tmp_path, "--state-file", str(state)) as (_, kubeconfig),
        config.new_client_from_config(config_file=str(kubeconfig)) as api,
    ):
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "kept"}})
        made = core.create_namespaced_config_map(
            "kept", {"metadata": {"name": "c"}, "data": {"a": "1"}}
        )
        client.ApiextensionsV1Api(api).create_custom_resource_definition(
            {
                "metadata": {"name": "things.example.com"},
                "spec": {
                    "group": "example.com",
                    "scope": "Cluster",
                    "names": {"plural": "things", "kind": "Thing"},
                    "versions": [
                        {
                            "name": "v1",
                            "served": True,
                            "storage": True,
                            "schema": {"openAPIV3Schema": {"type": "object"}},
                        }
                    ],
                },
            }
        )
    assert json.loads(state.read_text())["resourceVersion"] > 0
    with (
        kubesim_process(tmp_path, "--state-file", str(state)) as (_, kubeconfig),
        config.new_client_from_config(config_file=str(kubeconfig)) as api,
    ):
        core = client.CoreV1Api(api)
        again = core.read_namespaced_config_map("c", "kept")
        assert again.data == {"a": "1"}
        assert again.metadata.uid == made.metadata.uid
        newer = core.create_namespaced_config_map("kept", {"metadata": {"name": "d"}})
        assert int(newer.metadata.resource_version) > int(made.metadata.resource_version)
        custom = client.CustomObjectsApi(api)
        custom.create_cluster_custom_object(
            "example.com",
            "v1",
            "things",
            {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}},
        )


def test_faults_from_the_environment(tmp_path: Path) -> None:
    faults = json.dumps({"error_rate": {"create": 1.0}, "error_code": 500})
    with (
        kubesim_process(tmp_path, env={"KUBESIM_FAULTS": faults}) as (_, kubeconfig),
        config.new_client_from_config(config_file=str(kubeconfig)) as api,
    ):
        core = client.CoreV1Api(api)
        try:
            core.create_namespaced_config_map("default", {"metadata": {"name": "x"}})
        except client.ApiException as err:
            assert err.status == 500
        else:
            raise AssertionError("expected an injected 500")
        eventually(lambda: core.list_namespace().items)


def test_bad_arguments_exit_non_zero() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meshplane_cli.main", "kubesim", "--faults", "{bad"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert "invalid faults" in proc.stderr


def test_legacy_discovery_flag(tmp_path: Path) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    kinds = []
    for args in ((), ("--no-aggregated-discovery",)):
        with kubesim_process(tmp_path / str(len(args)), *args) as (url, _):
            request = urllib.request.Request(f"{url}/apis", headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=10) as answer:
                kinds.append(json.loads(answer.read())["kind"])
    assert kinds == ["APIGroupDiscoveryList", "APIGroupList"]


def test_logged_errors_carry_plain_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    """A kubesim bug is logged with a plain traceback, without the frames' locals: structlog's
    default (rich) rendered them, stored objects included, taking the event loop seconds per
    logged error (what stalled `kubectl wait`, see test_kubectl_wait)."""
    saved = structlog.get_config()
    try:
        configure_logging()
        stored = {"spec": {"description": "stored-object-" * 1000}}
        try:
            raise RuntimeError(f"a kubesim bug near {len(stored)} stored object")
        except RuntimeError:
            structlog.get_logger("kubesim.api").exception("request_failed", path="/apis")
    finally:
        structlog.configure(**saved)
    logged = capsys.readouterr().err
    assert "request_failed" in logged
    assert "RuntimeError: a kubesim bug near 1 stored object" in logged
    assert "stored-object-" not in logged
