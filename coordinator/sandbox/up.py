"""`meshplane up`: a whole meshplane on one machine, as child processes of one command.

Starts, in order: a simulated cluster (kubesim, kept in ``<data-dir>/kubesim/state.json``) unless
``--kubeconfig`` names a real one, or with ``--kube real`` a real control plane (`meshplane kube
up`, built by `make kube`, kept in ``<data-dir>/kube``; see docs/realkube.md); every adapter
that `meshplane adapter MESH` accepts (each candidate mesh is tried; one whose declaration is
not installed exits at once and is skipped); then the coordinator with those adapters. Adapters
accept kubeconfigs in requests only for the sandbox's own cluster (``--allowed-cluster-servers``),
and none with ``--kubeconfig``. Each child must report SERVING (gRPC health) before the next
starts. Then it prints where everything listens and a first command to try, and waits.

The coordinator requires a bearer token: `up` keeps an admin token in ``<data-dir>/auth/``
(``admin.token`` and the coordinator's ``tokens.csv``, both mode 0600, made on first use and kept
across runs) and registers it for the coordinator's address with the client configuration
(``coordinator.client.credentials``), so `meshplane` commands on this machine use it unasked.

A child that exits while up runs is restarted with the same arguments after a growing delay;
one that exits more than ``max_restarts`` times within ``restart_window_seconds`` stops
everything instead (it is not going to get better by itself). A lock on the data directory
keeps a second `up` from using the same one.

Ctrl-C or SIGTERM stops the children in reverse order: SIGTERM, then SIGKILL after a grace
period. Children run in their own session (a terminal's Ctrl-C reaches only this process, which
stops them in order) and, on Linux, get SIGTERM if this process dies without cleaning up.

Every child writes stdout to ``<data-dir>/logs/<name>.out`` and its log to ``<name>.log``.

The adapters serve only the coordinator: each `up` writes a fresh link token to
``<data-dir>/link-token`` (mode 0600), given to the adapters as ``--coordinator-token-file`` and
to the coordinator as ``--adapter-token-file``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import sys
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.client.credentials import register_sandbox
from coordinator.sandbox.data_dir_lock import DataDirLock, DataDirLocked
from serving.link_tokens import write_link_token
from serving.logging_setup import configure_logging
from serving.mesh_entry_points import mesh_names
from serving.tls import dial

__all__ = [
    "DEFAULT_PORT_BASE",
    "Child",
    "Sandbox",
    "SandboxError",
    "SandboxSettings",
    "register",
]

_log = structlog.get_logger(__name__)


def candidate_meshes() -> tuple[str, ...]:
    """Meshes `up` tries, in port order: every registered one (serving/mesh_entry_points.py);
    those `meshplane adapter` cannot start are skipped."""
    return mesh_names()


DEFAULT_PORT_BASE = 10100
"""Coordinator on the base (the client's default), kubesim on base+1, adapters from base+2."""

SANDBOX_ADMIN_GROUP = "meshplane:admins"

KUBE_KINDS: tuple[str, ...] = ("sim", "real")
"""``--kube``: kubesim (the default; needs nothing but Python) or the real control plane."""
_REAL_KUBE_READY = "kube-apiserver serving at "
"""The line `meshplane kube up` prints once its control plane is usable."""

_PR_SET_PDEATHSIG = 1
_UNAVAILABLE_MESH_EXIT = 2


class SandboxError(RuntimeError):
    """A child did not come up; the message says which and where its log is."""


@dataclass(frozen=True, kw_only=True)
class SandboxSettings:
    """What `meshplane up` was asked for."""

    data_dir: Path = Path(".data")
    kubeconfig: Path | None = None
    chart_repos: dict[str, str] = field(default_factory=dict)
    mirror: Path | None = None
    port_base: int = DEFAULT_PORT_BASE
    meshes: tuple[str, ...] = field(default_factory=candidate_meshes)
    start_timeout_seconds: float = 60.0
    stop_grace_seconds: float = 10.0
    kubesim_ready_delay: float = 0.2
    kube: str = "sim"
    """Which cluster to start when ``kubeconfig`` is None: "sim" (kubesim) or "real"."""
    real_kube_start_timeout_seconds: float = 300.0
    """How long `meshplane kube up` may take (etcd, API server, controllers, Nodes Ready)."""
    allow_host_network: bool = False
    """Passed to `meshplane kube up`: start outside a loopback-only network namespace."""
    python: str = sys.executable
    max_restarts: int = 5
    """Restarts of one child allowed within ``restart_window_seconds``; one more stops `up`."""
    restart_window_seconds: float = 60.0
    restart_backoff_seconds: float = 0.5
    """Delay before the first restart; doubled for each recent restart, at most 10 s."""

    @property
    def coordinator_port(self) -> int:
        """Where the coordinator listens."""
        return self.port_base

    @property
    def kubesim_port(self) -> int:
        """Where the simulated API server listens."""
        return self.port_base + 1

    def adapter_port(self, mesh: str) -> int:
        """A fixed port per candidate mesh, so addresses survive restarts."""
        registered = candidate_meshes()
        known = list(registered) + [m for m in self.meshes if m not in registered]
        return self.port_base + 2 + known.index(mesh)


@dataclass(kw_only=True)
class Child:
    """One started child process and where it writes."""

    name: str
    args: tuple[str, ...]
    process: asyncio.subprocess.Process
    stdout_path: Path
    log_path: Path
    address: str = ""
    detail: str = ""
    restarts: deque[float] = field(default_factory=deque)
    """Loop times of this child's restarts (only those within the window are kept)."""


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux only; ignored elsewhere)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Sandbox:
    """The children of one `meshplane up`, started in order and stopped in reverse."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.children: list[Child] = []
        self.kubeconfig: Path | None = settings.kubeconfig
        self.kubernetes_url = ""
        self.adapters: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self.coordinator_address = ""
        self._lock = DataDirLock(settings.data_dir)

    @property
    def _logs(self) -> Path:
        return self.settings.data_dir / "logs"

    @property
    def link_token_file(self) -> Path:
        """The coordinator-adapter link token of this `up` (written when it starts)."""
        return self.settings.data_dir / "link-token"

    async def _exec(self, name: str, args: Sequence[str]) -> asyncio.subprocess.Process:
        """One child process; stdout starts empty (it is read for the address), the log grows."""
        self._logs.mkdir(parents=True, exist_ok=True)
        with (
            (self._logs / f"{name}.out").open("wb") as out,
            (self._logs / f"{name}.log").open("ab") as err,
        ):
            process = await asyncio.create_subprocess_exec(
                self.settings.python,
                "-m",
                "meshplane_cli.main",
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        _log.info("sandbox.started", child=name, pid=process.pid)
        return process

    async def _spawn(self, name: str, args: Sequence[str]) -> Child:
        process = await self._exec(name, args)
        child = Child(
            name=name,
            args=tuple(args),
            process=process,
            stdout_path=self._logs / f"{name}.out",
            log_path=self._logs / f"{name}.log",
        )
        self.children.append(child)
        return child

    async def _await_line(
        self, child: Child, accept: Callable[[str], Any | None], *, within: float | None = None
    ) -> Any | None:
        """The first stdout line ``accept`` maps to a value; None when the child exited first."""
        loop = asyncio.get_running_loop()
        within = self.settings.start_timeout_seconds if within is None else within
        deadline = loop.time() + within
        while True:
            for line in child.stdout_path.read_text(errors="replace").splitlines():
                found = accept(line)
                if found is not None:
                    return found
            if child.process.returncode is not None:
                return None
            if loop.time() > deadline:
                raise SandboxError(
                    f"{child.name} did not report its address within "
                    f"{within:g}s; see {child.log_path}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.process.wait(), 0.05)

    async def _await_serving(self, child: Child) -> None:
        """Until the child's gRPC health check answers SERVING."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.start_timeout_seconds
        async with dial(child.address, tls=None) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    answer = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except Exception as exc:  # not listening yet, or still starting
                    _log.debug("sandbox.not_serving_yet", child=child.name, error=repr(exc))
                if child.process.returncode is not None:
                    raise SandboxError(
                        f"{child.name} exited with {child.process.returncode}; see {child.log_path}"
                    )
                if loop.time() > deadline:
                    raise SandboxError(f"{child.name} is not SERVING; see {child.log_path}")
                await asyncio.sleep(0.1)

    def _failed(self, child: Child) -> SandboxError:
        tail = child.log_path.read_text(errors="replace").strip().splitlines()[-5:]
        return SandboxError(
            f"{child.name} exited with {child.process.returncode} before it was ready; "
            f"see {child.log_path}" + ("\n  " + "\n  ".join(tail) if tail else "")
        )

    async def start(self) -> None:
        """Start every child in order; on failure the ones already started are stopped.

        Raises SandboxError, before starting anything, when another `up` holds the data dir.
        """
        try:
            self._lock.acquire()
        except DataDirLocked as exc:
            raise SandboxError(str(exc)) from None
        try:
            write_link_token(self.link_token_file)
            if self.kubeconfig is None and self.settings.kube == "real":
                await self._start_real_kube()
            elif self.kubeconfig is None:
                await self._start_kubesim()
            # Adapters are independent of each other: start them side by side.
            results = await asyncio.gather(
                *(self._start_adapter(mesh) for mesh in self.settings.meshes),
                return_exceptions=True,
            )
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]
            self.adapters = {
                m: self.adapters[m] for m in self.settings.meshes if m in self.adapters
            }
            if not self.adapters:
                raise SandboxError("no adapter started; see the logs under " + str(self._logs))
            await self._start_coordinator()
        except BaseException:
            await self.stop()
            raise

    async def _start_kubesim(self) -> None:
        state = self.settings.data_dir / "kubesim"
        state.mkdir(parents=True, exist_ok=True)
        kubeconfig = state / "kubeconfig"
        args = ["kubesim", "--port", str(self.settings.kubesim_port)]
        args += ["--kubeconfig-out", str(kubeconfig), "--state-file", str(state / "state.json")]
        args += ["--ready-delay", str(self.settings.kubesim_ready_delay)]
        await self._start_cluster("kubesim", args, "kubesim serving at ", kubeconfig, "")

    async def _start_real_kube(self) -> None:
        state = self.settings.data_dir / "kube"
        kubeconfig = state / "kubeconfig"
        args = ["kube", "up", "--kubeconfig-out", str(kubeconfig), "--data-dir", str(state)]
        args += ["--port", str(self.settings.kubesim_port)]
        if self.settings.allow_host_network:
            args.append("--allow-host-network")
        await self._start_cluster(
            "kube",
            args,
            _REAL_KUBE_READY,
            kubeconfig,
            "real control plane, ",
            within=self.settings.real_kube_start_timeout_seconds,
        )

    async def _start_cluster(
        self,
        name: str,
        args: list[str],
        prefix: str,
        kubeconfig: Path,
        detail: str,
        *,
        within: float | None = None,
    ) -> None:
        """Start the cluster child; it is ready once it printed ``prefix URL``, then its
        kubeconfig line."""
        child = await self._spawn(name, args)
        url = await self._await_line(
            child,
            lambda line: line.removeprefix(prefix) if line.startswith(prefix) else None,
            within=within,
        )
        if url is None:
            raise self._failed(child)
        ready = await self._await_line(
            child, lambda line: line if line.startswith("kubeconfig:") else None, within=within
        )
        if ready is None:
            raise self._failed(child)
        self.kubernetes_url = str(url)
        child.address = self.kubernetes_url
        child.detail = f"{detail}kubeconfig {kubeconfig}"
        self.kubeconfig = kubeconfig

    async def _start_adapter(self, mesh: str) -> None:
        settings = self.settings
        assert self.kubeconfig is not None
        args = [
            "adapter",
            mesh,
            "--port",
            str(settings.adapter_port(mesh)),
            "--kubeconfig",
            str(self.kubeconfig),
            "--state-dir",
            str(settings.data_dir / "adapters" / mesh),
            "--cache-dir",
            str(settings.data_dir / "cache"),
            "--coordinator-token-file",
            str(self.link_token_file),
        ]
        if mesh in settings.chart_repos:
            args += ["--chart-repo", settings.chart_repos[mesh]]
        if settings.mirror is not None:
            args += ["--mirror", str(settings.mirror)]
        if self.kubernetes_url:
            # Requests may name the sandbox's own kubesim in a kubeconfig (the conformance
            # suite's --send-kubeconfig does), and no other server.
            server = urllib.parse.urlsplit(self.kubernetes_url).netloc
            args += ["--allow-request-kubeconfigs", "--allowed-cluster-servers", server]
        child = await self._spawn(f"adapter-{mesh}", args)

        found = await self._await_line(child, _announced)
        if found is None:
            await child.process.wait()
            self.children.remove(child)
            if child.process.returncode == _UNAVAILABLE_MESH_EXIT:
                self.skipped[mesh] = f"not available (see {child.log_path})"
                _log.info("sandbox.mesh_skipped", mesh=mesh, reason=self.skipped[mesh])
                return
            raise self._failed(child)
        child.address = str(found["grpc"])
        child.detail = f"event stream {found.get('event_stream_id', '')}"
        await self._await_serving(child)
        self.adapters[mesh] = child.address

    @property
    def admin_token_file(self) -> Path:
        """The sandbox admin's bearer token (one line, mode 0600)."""
        return self.settings.data_dir / "auth" / "admin.token"

    def _token_file(self) -> Path:
        """The coordinator's token file, with the sandbox admin's token (made once, then kept)."""
        directory = self.settings.data_dir / "auth"
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tokens = directory / "tokens.csv"
        if not self.admin_token_file.exists() or not tokens.exists():
            token = secrets.token_urlsafe(32)
            _write_private(self.admin_token_file, token + "\n")
            _write_private(tokens, f'{token},sandbox-admin,sandbox-admin,"{SANDBOX_ADMIN_GROUP}"\n')
        return tokens

    async def _start_coordinator(self) -> None:
        args = [
            "coordinator",
            "--port",
            str(self.settings.coordinator_port),
            "--data-dir",
            str(self.settings.data_dir / "coordinator"),
            "--adapter-token-file",
            str(self.link_token_file),
            "--token-auth-file",
            str(self._token_file()),
        ]
        for mesh, address in self.adapters.items():
            args += ["--adapter", f"{mesh}={address}"]
        child = await self._spawn("coordinator", args)
        found = await self._await_line(child, _announced)
        if found is None:
            raise self._failed(child)
        child.address = str(found["grpc"])
        await self._await_serving(child)
        self.coordinator_address = child.address
        register_sandbox(child.address, self.admin_token_file)

    async def _ready_again(self, child: Child) -> None:
        """A restarted child announced itself and (for gRPC children) is SERVING again."""
        if child.name in ("kubesim", "kube"):
            ready = await self._await_line(
                child,
                lambda line: line if line.startswith("kubeconfig:") else None,
                within=self.settings.real_kube_start_timeout_seconds
                if child.name == "kube"
                else None,
            )
            if ready is None:
                raise self._failed(child)
            return
        if await self._await_line(child, _announced) is None:
            raise self._failed(child)
        await self._await_serving(child)

    def _recent_restarts(self, child: Child, now: float) -> int:
        while child.restarts and now - child.restarts[0] > self.settings.restart_window_seconds:
            child.restarts.popleft()
        return len(child.restarts)

    async def _restart(self, child: Child) -> bool:
        """Restart ``child`` until it is ready again; False once its restart budget is spent."""
        loop = asyncio.get_running_loop()
        settings = self.settings
        while True:
            recent = self._recent_restarts(child, loop.time())
            if recent >= settings.max_restarts:
                return False
            delay = min(10.0, settings.restart_backoff_seconds * 2**recent)
            _log.warning(
                "sandbox.child_exited",
                child=child.name,
                exit_code=child.process.returncode,
                restart_in_seconds=delay,
                log=str(child.log_path),
            )
            await asyncio.sleep(delay)
            child.restarts.append(loop.time())
            child.process = await self._exec(child.name, child.args)
            try:
                await self._ready_again(child)
            except SandboxError as exc:
                _log.warning("sandbox.restart_failed", child=child.name, error=str(exc))
                if child.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.process.kill()
                    await child.process.wait()
                continue
            _log.warning(
                "sandbox.restarted",
                child=child.name,
                pid=child.process.pid,
                restarts_in_window=len(child.restarts),
            )
            return True

    async def supervise(self) -> Child:
        """Restart children that exit; returns the first one whose restart budget ran out."""
        while True:
            child = await self.wait_for_exit()
            if not await self._restart(child):
                return child

    async def wait_for_exit(self) -> Child:
        """Until any child exits; returns it."""
        waits = {
            asyncio.ensure_future(child.process.wait()): child for child in list(self.children)
        }
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            return waits[next(iter(done))]
        finally:
            for waiting in waits:
                waiting.cancel()

    async def stop(self) -> None:
        """Stop children newest first: SIGTERM, then SIGKILL after the grace period."""
        while self.children:
            child = self.children.pop()
            process = child.process
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                # `kube up` stops five processes in order, each with its own grace period.
                grace = self.settings.stop_grace_seconds * (6 if child.name == "kube" else 1)
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except TimeoutError:
                    _log.warning("sandbox.kill", child=child.name, pid=process.pid)
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
            _log.info("sandbox.stopped", child=child.name, exit_code=process.returncode)
        self._lock.release()

    def summary(self) -> str:
        """Where everything listens, and a first command."""
        lines = ["meshplane is up"]
        rows: list[tuple[str, str, str]] = []
        if self.kubernetes_url:
            what = "real control plane" if self.settings.kube == "real" else "kubesim"
            rows.append(("kubernetes", self.kubernetes_url, f"{what}, {self.kubeconfig}"))
        else:
            rows.append(("kubernetes", "", f"kubeconfig {self.kubeconfig}"))
        for mesh, address in self.adapters.items():
            rows.append((f"{mesh} adapter", address, ""))
        for mesh, reason in self.skipped.items():
            rows.append((f"{mesh} adapter", "-", f"skipped: {reason}"))
        rows.append(("coordinator", self.coordinator_address, str(self.settings.data_dir)))
        rows.append(("admin token", str(self.admin_token_file), "(meshplane commands use it)"))
        width = max(len(row[0]) for row in rows)
        address_width = max(len(row[1]) for row in rows)
        for name, address, note in rows:
            lines.append(f"  {name.ljust(width)}  {address.ljust(address_width)}  {note}".rstrip())
        lines.append(f"  logs: {self._logs}")
        first = next(iter(self.adapters))
        hint = (
            ""
            if self.coordinator_address.endswith(":10100")
            else f" --coordinator {self.coordinator_address}"
        )
        lines.append(f"try:  meshplane ops {first}{hint}")
        lines.append("Ctrl-C stops everything.")
        return "\n".join(lines)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (never briefly by others)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)


def _announced(line: str) -> dict[str, Any] | None:
    """The JSON line a gRPC child prints once it listens (it has a "grpc" address)."""
    return _json_with(line, "grpc") if line.startswith("{") else None


def _json_with(line: str, key: str) -> dict[str, Any] | None:
    with contextlib.suppress(ValueError):
        document = json.loads(line)
        if isinstance(document, dict) and key in document:
            return document
    return None


# -- command ----------------------------------------------------------------------------------


def _chart_repo(text: str) -> tuple[str, str]:
    mesh, sep, url = text.partition("=")
    if not sep or not mesh.strip() or not url.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not MESH=URL")
    return mesh.strip().lower(), url.strip()


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane up`."""
    parser = subparsers.add_parser(
        "up",
        help="run kubesim, the adapters and the coordinator together (a local sandbox)",
        description="Start a simulated cluster (unless --kubeconfig), every available mesh "
        "adapter and the coordinator as child processes; Ctrl-C stops them all.",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="use this cluster instead of kubesim"
    )
    parser.add_argument(
        "--kube",
        choices=KUBE_KINDS,
        default="sim",
        help="the cluster to start without --kubeconfig: sim (kubesim, the default) or real "
        "(`meshplane kube up`: the real control plane `make kube` builds; docs/realkube.md)",
    )
    parser.add_argument(
        "--allow-host-network",
        action="store_true",
        help="with --kube real: start outside a loopback-only network namespace",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".data"), help="state and logs (default ./.data)"
    )
    parser.add_argument(
        "--chart-repo",
        type=_chart_repo,
        action="append",
        default=[],
        metavar="MESH=URL",
        help="chart repository of one mesh's adapter (repeatable)",
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        default=None,
        metavar="DIR",
        help="offline mirror: DIR/charts/<mesh>/ Helm repositories plus apps/ and addons/",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        default=DEFAULT_PORT_BASE,
        help=f"coordinator port; kubesim on +1, adapters from +2 (default {DEFAULT_PORT_BASE})",
    )
    parser.add_argument(
        "--mesh",
        action="append",
        default=None,
        help=f"only this mesh's adapter (repeatable; default: try {', '.join(candidate_meshes())})",
    )
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default="warning"
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    configure_logging(level=args.log_level, json=False)
    if args.mirror is not None and not args.mirror.is_dir():
        print(f"meshplane up: --mirror {args.mirror} is not a directory", file=sys.stderr)
        return 2
    if not 1 <= args.port_base <= 65535 - 2 - len(candidate_meshes()):
        print(f"meshplane up: --port-base {args.port_base} leaves no room", file=sys.stderr)
        return 2
    if args.kube == "real" and args.kubeconfig is not None:
        print(
            "meshplane up: --kube real starts its own cluster; drop --kubeconfig", file=sys.stderr
        )
        return 2
    meshes = tuple(m.lower() for m in args.mesh) if args.mesh else candidate_meshes()
    settings = SandboxSettings(
        data_dir=args.data_dir.absolute(),
        kubeconfig=args.kubeconfig,
        chart_repos=dict(args.chart_repo),
        mirror=args.mirror.absolute() if args.mirror is not None else None,
        port_base=args.port_base,
        meshes=meshes,
        kube=args.kube,
        allow_host_network=args.allow_host_network,
    )
    return asyncio.run(_serve(Sandbox(settings)))


async def _serve(sandbox: Sandbox) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.ensure_future(sandbox.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await sandbox.stop()
            return 130
        stopping.cancel()
        try:
            starting.result()
        except SandboxError as exc:
            print(f"meshplane up: {exc}", file=sys.stderr)
            return 1
        print(sandbox.summary(), flush=True)
        exited = asyncio.ensure_future(sandbox.supervise())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        code = 0
        if exited.done():
            child = exited.result()
            settings = sandbox.settings
            print(
                f"meshplane up: {child.name} exited with {child.process.returncode} after "
                f"{settings.max_restarts} restarts within {settings.restart_window_seconds:g}s; "
                f"stopping everything (see {child.log_path})",
                file=sys.stderr,
            )
            code = 1
        else:
            exited.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await exited  # a restart in progress ends before the children are stopped
            print("stopping...", flush=True)
        await sandbox.stop()
        return code
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
