"""Request kubeconfigs through real `meshplane adapter istio` processes and the coordinator.

Each attack of issue 12 item 1 is sent over gRPC: an exec plugin whose command would create a
marker file, a ``tokenFile`` naming a local secret with the API server set to a loopback HTTP
server that records every Authorization header, file paths, an auth-provider, a kubeconfig to an
adapter that does not accept them, and one to a server the operator did not allow. The adapter
processes run under a ``sys.addaudithook`` hook that logs every process start and every open of
the files the attacks name, so "nothing ran, nothing was read" is observed, not assumed.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
import yaml

from adapters.kit.testing import AdapterClient, AdapterProcess
from coordinator.server.passthrough import MESH_METADATA_KEY
from coordinator.server.settings import StaticAdapter
from kubesim.harness import RunningSim
from kubesim.kubeconfig import TOKEN
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb
from tests.coordinator.routing_harness import coordinator, make_settings
from tests.kit.judged_kubeconfigs import accepting_flags

StatusCode = grpc.StatusCode
SECRET = "s3cret-from-the-adapters-disk"
CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: judged}\ndata: {a: b}\n"

_AUDITED_ADAPTER = """\
import argparse, os, sys
from adapters.kit.process import cli
log_path = os.environ["MESHPLANE_TEST_AUDIT_LOG"]
watched = frozenset(filter(None, os.environ["MESHPLANE_TEST_WATCHED_PATHS"].split(os.pathsep)))
STARTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                    "os.fork", "os.forkpty", "pty.spawn"})
def audit(event, args):
    if event in STARTS or (event == "open" and str(args[0]) in watched):
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{event} {args!r}\\n")
parser = argparse.ArgumentParser(prog="meshplane")
cli.register(parser.add_subparsers())
args = parser.parse_args()
# Imported and parsed: from here on (serving, every request) each process start and each open
# of a watched file is logged.
sys.addaudithook(audit)
sys.exit(args.run(args))
"""


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every request with ``{}`` and records its path and Authorization header."""

    seen: list[tuple[str, str]]

    def _answer(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


@dataclass(kw_only=True)
class Recorder:
    """A loopback HTTP server playing a caller-chosen API server."""

    url: str
    seen: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Files:
    """What the attacks point at: a secret token file, a marker an exec would create, PEM files."""

    token_file: Path
    marker: Path
    certificate: Path
    audit_log: Path

    def watched(self) -> list[Path]:
        return [self.token_file, self.certificate]


@dataclass(frozen=True, kw_only=True)
class Adapters:
    """Two adapter processes: one as installed (no request kubeconfigs), one accepting them
    for kubesim's address only."""

    off: AdapterProcess
    on: AdapterProcess


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    seen: list[tuple[str, str]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="recorder", daemon=True)
    thread.start()
    try:
        yield Recorder(url=f"http://127.0.0.1:{server.server_address[1]}", seen=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    where = tmp_path_factory.mktemp("attack-files")
    token_file = where / "token"
    token_file.write_text(SECRET)
    certificate = where / "client.crt"
    certificate.write_text("-----BEGIN CERTIFICATE-----\n")
    return Files(
        token_file=token_file,
        marker=where / "exec-ran",
        certificate=certificate,
        audit_log=where / "audit.log",
    )


@pytest.fixture(scope="module")
def adapters(
    kubesim_module: RunningSim, files: Files, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adapters]:
    tmp_path = tmp_path_factory.mktemp("adapters")
    command = [sys.executable, "-c", _AUDITED_ADAPTER, "adapter", "istio"]

    def args(name: str, *extra: str) -> list[str]:
        return [
            "--port",
            "0",
            "--kubeconfig",
            str(kubesim_module.kubeconfig),
            # Nothing here needs charts; a dead loopback port keeps every address local.
            "--chart-repo",
            "http://127.0.0.1:9/charts",
            "--manifests-url",
            "http://127.0.0.1:9/manifests",
            "--cache-dir",
            str(tmp_path / f"{name}-cache"),
            *extra,
        ]

    with pytest.MonkeyPatch.context() as env:
        env.setenv("MESHPLANE_GIT_SHA", "test")  # no `git rev-parse` at start-up
        env.setenv("MESHPLANE_TEST_AUDIT_LOG", str(files.audit_log))
        env.setenv("MESHPLANE_TEST_WATCHED_PATHS", os.pathsep.join(map(str, files.watched())))
        # Start-up is slower on a loaded machine; 60 s is a bound, not an expectation.
        off = AdapterProcess(args("off"), tmp_path / "off.log", command=command).start(60)
        try:
            on = AdapterProcess(
                args("on", *accepting_flags(kubesim_module.url)),
                tmp_path / "on.log",
                command=command,
            ).start(60)
        except BaseException:
            off.stop()
            raise
    try:
        yield Adapters(off=off, on=on)
    finally:
        on.stop()
        off.stop()


def kubeconfig(server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def exec_plugin(files: Files) -> dict[str, Any]:
    return {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "touch",
            "args": [str(files.marker)],
            "interactiveMode": "Never",
        }
    }


def _jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.c2ln"


def attacks(recorder: Recorder, files: Files) -> list[tuple[str, str, str]]:
    """(name, kubeconfig, the refused part of it), each aimed at the recording server."""
    oidc = {
        "auth-provider": {
            "name": "oidc",
            "config": {
                "client-id": "c",
                "id-token": _jwt({"exp": 4_102_444_800}),
                "idp-issuer-url": recorder.url,
                "refresh-token": "r",
            },
        }
    }
    paths = {"client-certificate": str(files.certificate), "client-key": str(files.certificate)}
    https = recorder.url.replace("http://", "https://")
    return [
        ("exec", kubeconfig(recorder.url, exec_plugin(files)), "users[0].user.exec"),
        (
            "tokenFile",
            kubeconfig(recorder.url, {"tokenFile": str(files.token_file)}),
            "users[0].user.tokenFile",
        ),
        ("auth-provider", kubeconfig(recorder.url, oidc), "users[0].user.auth-provider"),
        ("client files", kubeconfig(https, paths), "users[0].user.client-certificate"),
        (
            "CA file",
            kubeconfig(https, {"token": "t"}, {"certificate-authority": str(files.certificate)}),
            "clusters[0].cluster.certificate-authority",
        ),
    ]


def assert_nothing_ran_or_was_read(recorder: Recorder, files: Files) -> None:
    assert not files.marker.exists(), "an exec plugin ran"
    assert recorder.seen == [], f"the adapter called the caller's server: {recorder.seen}"
    audit = files.audit_log.read_text() if files.audit_log.exists() else ""
    assert audit == "", f"the adapter started a process or opened an attack's file:\n{audit}"


def apply(kubeconfig_text: str, operation_id: str) -> apb.ApplyOperationRequest:
    return apb.ApplyOperationRequest(
        operation_id=operation_id,
        operation="custom",
        namespace="default",
        custom_body=CONFIG_MAP,
        clusters=[apb.Cluster(name="target", kubeconfig=kubeconfig_text)],
    )


def status(kubeconfig_text: str) -> apb.GetMeshStatusRequest:
    return apb.GetMeshStatusRequest(cluster=apb.Cluster(name="target", kubeconfig=kubeconfig_text))


async def refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


@pytest.mark.timeout(240)
async def test_code_and_paths_in_a_request_kubeconfig_are_refused_by_a_real_adapter(
    adapters: Adapters, recorder: Recorder, files: Files
) -> None:
    client = AdapterClient(adapters.on.address)
    try:
        await client.wait_serving()
        for number, (name, text, part) in enumerate(attacks(recorder, files)):
            for call in (
                client.stub.ApplyOperation(apply(text, f"attack-{number}"), timeout=10),
                client.stub.GetMeshStatus(status(text), timeout=10),
            ):
                error = await refused(call)
                assert error.code() == StatusCode.INVALID_ARGUMENT, (name, error.details())
                details = error.details() or ""
                assert details.startswith(f"clusters[0].kubeconfig: {part}") or details.startswith(
                    f"cluster.kubeconfig: {part}"
                ), (name, details)
            missing = await refused(
                client.stub.GetOperation(
                    apb.GetOperationRequest(operation_id=f"attack-{number}"), timeout=10
                )
            )
            assert missing.code() == StatusCode.NOT_FOUND  # nothing was recorded
        assert_nothing_ran_or_was_read(recorder, files)
    finally:
        await client.close()


@pytest.mark.timeout(240)
async def test_an_adapter_takes_no_request_kubeconfigs_unless_its_operator_says_so(
    adapters: Adapters, recorder: Recorder, files: Files
) -> None:
    inline = kubeconfig(recorder.url, {"token": "caller-token"})
    client = AdapterClient(adapters.off.address)
    try:
        await client.wait_serving()
        for text in [inline, *(t for _, t, _ in attacks(recorder, files))]:
            for call in (
                client.stub.ApplyOperation(apply(text, "off"), timeout=10),
                client.stub.GetMeshStatus(status(text), timeout=10),
            ):
                error = await refused(call)
                assert error.code() == StatusCode.FAILED_PRECONDITION, error.details()
                assert "does not accept kubeconfigs in requests" in (error.details() or "")
                assert "--allow-request-kubeconfigs" in (error.details() or "")
        assert_nothing_ran_or_was_read(recorder, files)
    finally:
        await client.close()


@pytest.mark.timeout(240)
async def test_only_servers_the_operator_allows_and_those_work(
    adapters: Adapters, recorder: Recorder, files: Files, kubesim_module: RunningSim
) -> None:
    elsewhere = kubeconfig(recorder.url, {"token": "caller-token"})
    client = AdapterClient(adapters.on.address)
    try:
        await client.wait_serving()
        for call in (
            client.stub.ApplyOperation(apply(elsewhere, "elsewhere"), timeout=10),
            client.stub.GetMeshStatus(status(elsewhere), timeout=10),
        ):
            error = await refused(call)
            assert error.code() == StatusCode.PERMISSION_DENIED, error.details()
            assert f"server {recorder.url!r}" in (error.details() or "")
            assert "--allowed-cluster-servers" in (error.details() or "")
        assert_nothing_ran_or_was_read(recorder, files)

        # kubesim is allowed: its own kubeconfig (an inline token) works in a request.
        own = kubeconfig(kubesim_module.url, {"token": TOKEN})
        shown = await client.stub.GetMeshStatus(status(own), timeout=30)
        assert shown.cluster == "target" and not shown.installed
        await client.stub.ApplyOperation(apply(own, "allowed"), timeout=10)
        done = await client.wait("allowed", within=60)
        assert done.state == apb.OPERATION_STATE_SUCCEEDED, done.error
        assert [r.cluster for r in done.cluster_results] == ["target"]
        assert_nothing_ran_or_was_read(recorder, files)
    finally:
        await client.close()


@pytest.mark.timeout(240)
async def test_the_coordinator_forwards_and_relays_without_loading_anything(
    adapters: Adapters, recorder: Recorder, files: Files, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, adapters=(StaticAdapter(mesh="istio", address=adapters.on.address),)
    )
    async with coordinator(settings) as client:
        await client.wait_serving(adapters.on.address, within=30)
        mesh = ((MESH_METADATA_KEY, "istio"),)
        for name, text, part in attacks(recorder, files):
            calls = (
                client.stub.ApplyOperation(
                    cpb.ApplyOperationRequest(mesh="istio", request=apply(text, "via-coord")),
                    timeout=10,
                ),
                client.stub.GetMeshStatus(
                    cpb.GetMeshStatusRequest(mesh="istio", request=status(text)), timeout=10
                ),
                client.adapter_stub.ApplyOperation(
                    apply(text, "via-passthrough"), metadata=mesh, timeout=10
                ),
                client.adapter_stub.GetMeshStatus(status(text), metadata=mesh, timeout=10),
            )
            for call in calls:
                error = await refused(call)
                assert error.code() == StatusCode.INVALID_ARGUMENT, (name, error.details())
                assert f"kubeconfig: {part}" in (error.details() or ""), (name, error.details())
        elsewhere = kubeconfig(recorder.url, {"token": "caller-token"})
        error = await refused(
            client.stub.ApplyOperation(
                cpb.ApplyOperationRequest(mesh="istio", request=apply(elsewhere, "far")),
                timeout=10,
            )
        )
        assert error.code() == StatusCode.PERMISSION_DENIED, error.details()
        history = await client.stub.ListOperationHistory(
            cpb.ListOperationHistoryRequest(), timeout=10
        )
        recorded = {o.operation.operation_id for o in history.operations}
        assert recorded & {"via-coord", "via-passthrough", "far"} == set()
    assert_nothing_ran_or_was_read(recorder, files)
