"""`meshplane kube up` end to end: the real control plane starts, schedules a Deployment's Pods
onto fake Nodes that kwok makes Ready, and SIGTERM stops every process it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from realkube.admin_client import AdminClient
from realkube.cli import READY_LINE
from tests.plugins.realkube import require_realkube

pytestmark = pytest.mark.realkube

NODES = ["realkube-node-0", "realkube-node-1"]
COMPONENTS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def eventually(check: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{what} not reached within {within}s (last: {last!r})")


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> program name (argv[0]'s base name) of every live process whose command line
    contains ``text``."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        if text.encode() in b" ".join(argv) and "\nState:\tZ" not in status:
            found[int(entry.name)] = Path(argv[0].decode(errors="replace")).name
    return found


def read_until_ready(process: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, name="kube-up-stdout", daemon=True)
    reader.start()
    return reader


def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "example.invalid/app:1"}]},
            },
        },
    }


def ready_url(process: subprocess.Popen[str], lines: list[str], log: Path) -> str:
    """Wait for `kube up`'s ready line; the API server URL it names."""
    eventually(
        lambda: process.poll() is not None or any(x.startswith(READY_LINE) for x in lines),
        within=240,
        what="kube up ready",
    )
    assert process.poll() is None, log.read_text()[-3000:]
    url = next(x for x in lines if x.startswith(READY_LINE)).removeprefix(READY_LINE)
    assert url.startswith("https://127.0.0.1:")
    return url


def components_started(process: subprocess.Popen[str], data: Path) -> dict[int, str]:
    """Each control-plane component runs once, on the data dir (`kube up` itself aside)."""
    started = processes_mentioning(str(data))
    started.pop(process.pid, None)  # `kube up` itself
    assert sorted(started.values()) == sorted(COMPONENTS), started
    return started


def assert_a_deployment_runs_on_the_nodes(api: AdminClient) -> None:
    """Three replicas scheduled onto the fake Nodes, Running with pod IPs, admission applied."""
    nodes = api.get("/api/v1/nodes").json()["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == NODES
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "smoke"}}
    assert api.post("/api/v1/namespaces", namespace).status == 201
    created = api.post("/apis/apps/v1/namespaces/smoke/deployments", deployment("web", 3))
    assert created.status == 201, created.body[:300]

    def ready_replicas() -> int:
        reply = api.get("/apis/apps/v1/namespaces/smoke/deployments/web").json()
        return int((reply.get("status") or {}).get("readyReplicas") or 0)

    eventually(lambda: ready_replicas() == 3, within=90, what="3 ready replicas")
    pods = api.get("/api/v1/namespaces/smoke/pods?labelSelector=app%3Dweb").json()["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["nodeName"] in NODES
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["podIP"].startswith("10.244.")
        # Admission ran: the ServiceAccount plugin set the namespace's default account.
        assert pod["spec"]["serviceAccountName"] == "default"


def assert_every_process_gone(data: Path, started: dict[int, str]) -> None:
    assert processes_mentioning(str(data)) == {}
    for pid in started:
        assert (
            not os.path.exists(f"/proc/{pid}")
            or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
        )


@pytest.mark.timeout(300)
def test_kube_up_runs_a_deployment_and_stops_every_process(tmp_path: Path) -> None:
    require_realkube()
    data = tmp_path / "data"
    kubeconfig = tmp_path / "admin.kubeconfig"
    log = tmp_path / "kube-up.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshplane_cli.main", "kube", "up", "--kubeconfig-out",
             str(kubeconfig), "--data-dir", str(data), "--nodes", "2"],
            stdout=subprocess.PIPE, stderr=log_file, text=True,
        )  # fmt: skip
    lines: list[str] = []
    reader = read_until_ready(process, lines)
    try:
        url = ready_url(process, lines, log)
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600"
        started = components_started(process, data)
        pki = data / "pki"
        api = AdminClient(
            url, ca=pki / "ca.crt", cert=pki / "admin.crt", key=pki / "admin.key", timeout=30
        )
        assert_a_deployment_runs_on_the_nodes(api)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=120)
        reader.join(timeout=10)
        assert process.stdout is not None
        process.stdout.close()
    assert code == 0, log.read_text()[-3000:]
    assert_every_process_gone(data, started)
