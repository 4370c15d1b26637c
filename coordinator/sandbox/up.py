"""The sandbox of `meshplane up`: its children started in order, and stopped in reverse.

Starts, in order: a simulated cluster (kubesim, kept in ``<data-dir>/kubesim/state.json``) unless
``--kubeconfig`` names a real one, or with ``--kube real`` a real control plane (`meshplane kube
up`, built by `make kube`, kept in ``<data-dir>/kube``; see docs/realkube.md); every adapter
that `meshplane adapter MESH` accepts (each candidate mesh is tried; one whose declaration is
not installed exits at once and is skipped); then the coordinator with those adapters. Each
child must report SERVING (gRPC health) before the next starts.

Every step that starts something pushes its undoing onto one `contextlib.AsyncExitStack`: the
data directory's lock first, then each child. A step that fails unwinds what came before it,
and `stop` unwinds all of it, newest first.

The coordinator requires a bearer token: the sandbox keeps an admin token in ``<data-dir>/auth/``
(`coordinator.sandbox.admin_tokens`) and registers it for the coordinator's address with the
client configuration (``coordinator.client.credentials``), so `meshplane` commands on this
machine use it unasked. The adapters serve only the coordinator: each start writes a fresh link
token to ``<data-dir>/link-token`` (mode 0600), given to the adapters as
``--coordinator-token-file`` and to the coordinator as ``--adapter-token-file``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import structlog

from coordinator.client.credentials import register_sandbox
from coordinator.sandbox.admin_tokens import admin_token_file, coordinator_token_file
from coordinator.sandbox.child_arguments import (
    adapter_arguments,
    cluster_command,
    coordinator_arguments,
)
from coordinator.sandbox.children import Child, SandboxError
from coordinator.sandbox.data_dir_lock import DataDirLock, DataDirLocked
from coordinator.sandbox.launching import Launcher
from coordinator.sandbox.readiness import (
    await_announced,
    await_line,
    await_serving,
    exited_early,
    kubeconfig_written,
)
from coordinator.sandbox.settings import SandboxSettings
from coordinator.sandbox.summary import Listening, summary
from coordinator.sandbox.supervision import Supervisor
from serving.link_tokens import write_link_token

__all__ = ["Sandbox"]

_log = structlog.get_logger(__name__)

_UNAVAILABLE_MESH_EXIT = 2
"""How `meshplane adapter MESH` exits when the mesh's declaration is not installed."""


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
        self._launcher = Launcher(settings)
        self._supervisor = Supervisor(settings, self._launcher, self.children)
        self._running = contextlib.AsyncExitStack()

    @property
    def link_token_file(self) -> Path:
        """The coordinator-adapter link token of this `up` (written when it starts)."""
        return self.settings.link_token_file

    @property
    def admin_token_file(self) -> Path:
        """The sandbox admin's bearer token (one line, mode 0600)."""
        return admin_token_file(self.settings.data_dir)

    async def start(self) -> None:
        """Start every child in order; on failure the ones already started are stopped.

        Raises SandboxError, before starting anything, when another `up` holds the data dir.
        """
        async with contextlib.AsyncExitStack() as starting:
            starting.enter_context(self._locked())
            write_link_token(self.link_token_file)
            if self.kubeconfig is None:
                await self._start_cluster(starting)
            await self._start_adapters(starting)
            await self._start_coordinator(starting)
            self._running = starting.pop_all()

    async def stop(self) -> None:
        """Stop children newest first (SIGTERM, then SIGKILL after the grace period), then give
        the data directory up."""
        await self._running.aclose()

    async def supervise(self) -> Child:
        """Restart children that exit; returns the first one whose restart budget ran out."""
        return await self._supervisor.supervise()

    async def wait_for_exit(self) -> Child:
        """Until any child exits; returns it."""
        return await self._supervisor.wait_for_exit()

    def summary(self) -> str:
        """Where everything listens, and a first command."""
        return summary(
            Listening(
                kube=self.settings.kube,
                kubernetes_url=self.kubernetes_url,
                kubeconfig=self.kubeconfig,
                adapters=self.adapters,
                skipped=self.skipped,
                coordinator_address=self.coordinator_address,
                data_dir=self.settings.data_dir,
                admin_token_file=self.admin_token_file,
                logs=self.settings.logs,
            )
        )

    # -- the steps ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the data directory's lock; SandboxError when another `up` has it."""
        try:
            self._lock.acquire()
        except DataDirLocked as exc:
            raise SandboxError(str(exc)) from None
        try:
            yield
        finally:
            self._lock.release()

    async def _spawn(
        self, stack: contextlib.AsyncExitStack, name: str, args: Sequence[str]
    ) -> Child:
        """Start a child and push its stopping onto ``stack``."""
        child = await self._launcher.spawn(name, args)
        self.children.append(child)
        stack.push_async_callback(self._stop_child, child)
        return child

    async def _stop_child(self, child: Child) -> None:
        if child in self.children:  # a skipped adapter has exited and left the list already
            self.children.remove(child)
            await self._launcher.stop(child)

    async def _start_cluster(self, stack: contextlib.AsyncExitStack) -> None:
        """kubesim, or with ``--kube real`` the real control plane; ready once it printed its
        URL, then its kubeconfig line."""
        command = cluster_command(self.settings)
        command.state.mkdir(parents=True, exist_ok=True)
        child = await self._spawn(stack, command.name, command.args)
        url = await await_line(child, command.url, within=command.within)
        if (
            url is None
            or await await_line(child, kubeconfig_written, within=command.within) is None
        ):
            raise exited_early(child)
        self.kubernetes_url = child.address = str(url)
        self.kubeconfig = command.kubeconfig
        child.detail = f"{command.note}kubeconfig {command.kubeconfig}"

    async def _start_adapters(self, stack: contextlib.AsyncExitStack) -> None:
        """Every asked-for mesh's adapter, side by side (they are independent of each other)."""
        results = await asyncio.gather(
            *(self._start_adapter(stack, mesh) for mesh in self.settings.meshes),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
        self.adapters = {m: self.adapters[m] for m in self.settings.meshes if m in self.adapters}
        if not self.adapters:
            raise SandboxError("no adapter started; see the logs under " + str(self.settings.logs))

    async def _start_adapter(self, stack: contextlib.AsyncExitStack, mesh: str) -> None:
        assert self.kubeconfig is not None
        args = adapter_arguments(
            self.settings, mesh, kubeconfig=self.kubeconfig, kubernetes_url=self.kubernetes_url
        )
        child = await self._spawn(stack, f"adapter-{mesh}", args)
        within = self.settings.start_timeout_seconds
        try:
            found = await await_announced(child, within=within)
        except SandboxError:
            if child.process.returncode != _UNAVAILABLE_MESH_EXIT:
                raise
            self.children.remove(child)
            self.skipped[mesh] = f"not available (see {child.log_path})"
            _log.info("sandbox.mesh_skipped", mesh=mesh, reason=self.skipped[mesh])
            return
        child.address = str(found["grpc"])
        child.detail = f"event stream {found.get('event_stream_id', '')}"
        await await_serving(child, within=within)
        self.adapters[mesh] = child.address

    async def _start_coordinator(self, stack: contextlib.AsyncExitStack) -> None:
        token_file = coordinator_token_file(self.settings.data_dir)
        args = coordinator_arguments(self.settings, adapters=self.adapters, token_file=token_file)
        child = await self._spawn(stack, "coordinator", args)
        within = self.settings.start_timeout_seconds
        found = await await_announced(child, within=within)
        child.address = str(found["grpc"])
        await await_serving(child, within=within)
        self.coordinator_address = child.address
        register_sandbox(child.address, self.admin_token_file)
