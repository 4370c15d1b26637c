"""Drive `meshplane adapter istio` as a real subprocess over gRPC (for e2e tests and benchmarks).

`AdapterProcess` starts the console script, reads the address from its one JSON stdout line,
and offers what the tests need: an RPC stub, health, SIGKILL/SIGTERM, RSS. `EventCollector`
follows StreamEvents in the background so tests can wait for an event and check the sequence.
`managed_objects` lists every object labelled as meshplane's, across every served kind.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.kit.plans import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from kubesim.kubeconfig import TOKEN
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc

MESHPLANE = Path(sys.executable).parent / "meshplane"
ADAPTER_COMMAND_ONLY = (
    sys.executable,
    "-c",
    "import argparse, sys\n"
    "from adapters.kit import cli\n"
    "parser = argparse.ArgumentParser(prog='meshplane')\n"
    "cli.register(parser.add_subparsers())\n"
    "args = parser.parse_args()\n"
    "sys.exit(args.run(args))\n",
    "adapter",
    "istio",
)
"""`meshplane adapter istio` without the other subcommands' modules (what the adapter itself
costs, when the console script imports every command module up front)."""
TERMINAL = frozenset(
    {
        pb.OPERATION_STATE_SUCCEEDED,
        pb.OPERATION_STATE_FAILED,
        pb.OPERATION_STATE_CANCELLED,
        pb.OPERATION_STATE_INTERRUPTED,
    }
)


class AdapterProcess:
    """One adapter subprocess; `start` blocks until it printed its address."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        command: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = list(command) or [str(MESHPLANE), "adapter", "istio"]
        self.env = dict(env or {})
        self.args = list(args)
        self.log_path = log_path
        self.process: subprocess.Popen[str] | None = None
        self.address = ""
        self.started_at = 0.0
        self._log: IO[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 20.0) -> AdapterProcess:
        """Spawn and wait for the JSON line naming the gRPC address."""
        self._log = self.log_path.open("a", encoding="utf-8")
        self.started_at = time.monotonic()
        self.process = subprocess.Popen(
            [*self.command, *self.args],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env={**os.environ, "MESHPLANE_ADAPTER_LOG_FORMAT": "json", **self.env},
        )
        found: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                if not found and line.strip().startswith("{"):
                    found.append(line)
            # keep draining so the child never blocks on a full pipe

        reader = threading.Thread(target=read, name="adapter-stdout", daemon=True)
        reader.start()
        self._reader = reader
        deadline = time.monotonic() + timeout
        while not found:
            if self.process.poll() is not None:
                raise RuntimeError(f"adapter exited with {self.process.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"adapter printed no address in {timeout}s: {self.logs()}")
            time.sleep(0.01)
        self.address = str(json.loads(found[0])["grpc"])
        return self

    def logs(self) -> str:
        """The adapter's stderr so far (last 4 KiB), for failure messages."""
        try:
            return self.log_path.read_text(encoding="utf-8")[-4096:]
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident set size from /proc (VmRSS)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def kill(self) -> None:
        """SIGKILL: the adapter gets no chance to record anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after ``timeout``)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._close_log()
        return int(self.process.returncode)

    def _close_log(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=5)  # EOF once the process is gone
            self._reader = None
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None


class AdapterClient:
    """An async gRPC channel to one adapter."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.MeshAdapterServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def wait_serving(self, within: float = 20.0) -> None:
        """Poll the health service until SERVING."""
        deadline = time.monotonic() + within
        while True:
            try:
                reply = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("adapter never reported SERVING")
            await asyncio.sleep(0.01)

    async def apply(
        self,
        operation: str,
        *,
        operation_id: str,
        mesh_version: str = "",
        namespace: str = "",
        delete: bool = False,
        parameters: dict[str, str] | None = None,
        custom_body: str = "",
    ) -> pb.ApplyOperationResponse:
        request = pb.ApplyOperationRequest(
            operation_id=operation_id,
            operation=operation,
            mesh_version=mesh_version,
            namespace=namespace,
            delete=delete,
            parameters=parameters or {},
            custom_body=custom_body,
            username="e2e",
        )
        response: pb.ApplyOperationResponse = await self.stub.ApplyOperation(request, timeout=10)
        return response

    wait_seconds = 60.0
    """How long `wait` and `run` wait for an operation by default."""

    async def wait(self, operation_id: str, within: float | None = None) -> pb.Operation:
        """Poll GetOperation until the operation is terminal."""
        within = self.wait_seconds if within is None else within
        deadline = time.monotonic() + within
        while True:
            reply = await self.stub.GetOperation(
                pb.GetOperationRequest(operation_id=operation_id), timeout=5
            )
            if reply.operation.state in TERMINAL:
                operation: pb.Operation = reply.operation
                return operation
            if time.monotonic() > deadline:
                raise TimeoutError(f"{operation_id} still {reply.operation.state} after {within}s")
            await asyncio.sleep(0.01)

    async def run(self, operation: str, *, operation_id: str, **kwargs: Any) -> pb.Operation:
        """Apply and wait; fails the test with the error detail when it did not succeed."""
        await self.apply(operation, operation_id=operation_id, **kwargs)
        done = await self.wait(operation_id)
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, (operation, done.error)
        return done


class EventCollector:
    """Follows StreamEvents from a sequence into a list, in a named background task."""

    def __init__(self, client: AdapterClient, after_sequence: int = 0) -> None:
        self.events: list[pb.Event] = []
        self._client = client
        self._after = after_sequence
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> EventCollector:
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="e2e-events")
        return self

    async def _follow(self) -> None:
        stream = self._client.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=self._after))
        try:
            async for reply in stream:
                self.events.append(reply.event)
                self._changed.set()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE):
                raise

    async def wait_for(self, match: Callable[[pb.Event], bool], within: float = 60.0) -> pb.Event:
        """The first collected event matching ``match`` (waits for it to arrive)."""
        async with asyncio.timeout(within):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                self._changed.clear()
                await self._changed.wait()

    async def settled(
        self,
        operation_id: str,
        states: frozenset[int] = TERMINAL,
        within: float = 30.0,
    ) -> list[pb.Event]:
        """The operation's events once an event reporting one of ``states`` has arrived."""
        await self.wait_for(
            lambda e: e.operation_id == operation_id and e.operation_state in states, within
        )
        return self.of(operation_id)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await self._task

    def of(self, operation_id: str) -> list[pb.Event]:
        return [e for e in self.events if e.operation_id == operation_id]


async def managed_objects(cluster: str | Path) -> list[tuple[str, str, str]]:
    """(kind, namespace, name) of every object labelled managed-by=meshplane, any served kind.

    ``cluster`` is kubesim's URL (plain HTTP, kubesim's bearer token) or a kubeconfig file (any
    server: kubesim or the real API server, token or client certificate). Reads discovery and
    lists each listable resource across namespaces in a worker thread, so no kind can be
    forgotten.
    """
    access = _Access.of_url(cluster) if isinstance(cluster, str) else _Access.of_kubeconfig(cluster)
    return await asyncio.to_thread(_managed_objects, access)


class _Access:
    """Where a cluster is and how to authenticate to it, for plain urllib requests."""

    def __init__(
        self, server: str, headers: dict[str, str], context: ssl.SSLContext | None
    ) -> None:
        self.server = server.rstrip("/")
        self.headers = headers
        self.context = context

    @classmethod
    def of_url(cls, server: str) -> _Access:
        return cls(server, {"Authorization": f"Bearer {TOKEN}"}, None)

    @classmethod
    def of_kubeconfig(cls, path: Path) -> _Access:
        config = yaml.safe_load(path.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        headers = {"Authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        if not str(cluster["server"]).startswith("https:"):
            return cls(cluster["server"], headers, None)
        tls = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        if user.get("client-certificate-data"):
            with tempfile.TemporaryDirectory() as scratch:
                cert, key = Path(scratch) / "client.crt", Path(scratch) / "client.key"
                cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
                key.write_bytes(base64.b64decode(user["client-key-data"]))
                tls.load_cert_chain(cert, key)
        return cls(cluster["server"], headers, tls)

    def get(self, path: str, *, attempts: int = 30) -> Any:
        """GET ``path`` as JSON. A 429 is retried after its Retry-After: the real API server
        answers so while the watch cache of a just-created CRD's resource is not ready yet."""
        request = urllib.request.Request(self.server + path, headers=self.headers)
        for _ in range(attempts - 1):
            try:
                with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code != 429:
                    raise
                time.sleep(min(float(exc.headers.get("Retry-After") or 1), 5.0))
        with urllib.request.urlopen(request, timeout=10, context=self.context) as response:
            return json.loads(response.read())


def _managed_objects(access: _Access) -> list[tuple[str, str, str]]:
    selector = urllib.parse.quote(f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
    found: list[tuple[str, str, str]] = []
    for path, kind in _list_paths(access):
        try:
            listed = access.get(f"{path}?labelSelector={selector}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            continue  # the kind went away since discovery (its CRD was just deleted)
        for item in listed.get("items") or []:
            metadata = item.get("metadata") or {}
            found.append((kind, str(metadata.get("namespace", "")), str(metadata.get("name", ""))))
    return sorted(found)


def _list_paths(access: _Access) -> list[tuple[str, str]]:
    versions = ["/api/v1"]
    for group in access.get("/apis").get("groups") or []:
        versions.append(f"/apis/{group['preferredVersion']['groupVersion']}")
    paths: list[tuple[str, str]] = []
    for version in versions:
        try:
            served = access.get(version)
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            continue  # the group went away since /apis was read
        for resource in served.get("resources") or []:
            if "/" in resource["name"] or "list" not in (resource.get("verbs") or []):
                continue
            paths.append((f"{version}/{resource['name']}", str(resource["kind"])))
    return paths
