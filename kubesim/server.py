"""The kubesim server's lifecycle: bind, bootstrap the cluster, run controllers, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from aiohttp import web

from kubesim.api import KubeApi
from kubesim.cluster import NAMESPACES, Cluster
from kubesim.controllers.simulator import Simulator
from kubesim.faults import Faults
from kubesim.kubeconfig import TOKEN, generate_certificate, write_kubeconfig
from kubesim.resources import ResourceRegistry
from kubesim.reviews import Reviews
from kubesim.store import Store
from kubesim.tokens import ISSUER, Authenticator

log = structlog.get_logger(__name__)

# The `default/kubernetes` Service every cluster has (no selector: its endpoints are the
# apiserver's own).
KUBERNETES_SERVICE = {
    "metadata": {
        "name": "kubernetes",
        "labels": {"component": "apiserver", "provider": "kubernetes"},
    },
    "spec": {
        "type": "ClusterIP",
        "clusterIP": "10.96.0.1",
        "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
    },
}
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class SimConfig:
    host: str = "127.0.0.1"
    port: int = 0
    ready_delay: float = 0.2
    kubeconfig: Path | None = None
    state_file: Path | None = None
    tls: bool = False
    faults: Faults = field(default_factory=Faults)
    bookmark_seconds: float = 1.0
    history: int = 20000
    save_interval: float = 1.0
    shutdown_timeout: float = 5.0
    aggregated_discovery: bool = True
    """Answer `/api` and `/apis` in aggregated form when asked (1.30+); False: as older servers."""
    token_auth_file: Path | None = None
    """Static tokens for TokenReview, in kube-apiserver's `--token-auth-file` CSV format."""
    api_audiences: tuple[str, ...] = (ISSUER,)
    """The apiserver's own audiences (`--api-audiences`): the default of TokenRequest and
    TokenReview, and the only ones static tokens are valid for."""


class KubeSim:
    """One simulated cluster behind one HTTP(S) listener."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.store = Store(history=config.history)
        self.registry = ResourceRegistry()
        self.cluster = Cluster(self.store, self.registry)
        self.authenticator = Authenticator(
            self.store,
            token_file=config.token_auth_file,
            admin_token=TOKEN,
            api_audiences=config.api_audiences,
        )
        self.api = KubeApi(
            self.cluster,
            config.faults,
            Reviews(self.store, self.authenticator),
            bookmark_seconds=config.bookmark_seconds,
            aggregated_discovery=config.aggregated_discovery,
        )
        self.simulator = Simulator(self.cluster, ready_delay=config.ready_delay)
        self._runner: web.AppRunner | None = None
        self._saver: asyncio.Task[None] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""
        self.kubeconfig = Path()

    async def start(self) -> str:
        self._bootstrap()
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.api.handle)
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=self.config.shutdown_timeout
        )
        await self._runner.setup()
        self._tmp = tempfile.TemporaryDirectory(prefix="kubesim-")
        ssl_context = None
        certificate = None
        if self.config.tls:
            certificate = generate_certificate(self.config.host)
            ssl_context = certificate.ssl_context(Path(self._tmp.name))
        site = web.TCPSite(
            self._runner,
            self.config.host,
            self.config.port,
            ssl_context=ssl_context,
            reuse_address=True,
        )
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.base_events.Server)
        port = server.sockets[0].getsockname()[1]
        scheme = "https" if self.config.tls else "http"
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"{scheme}://{host}:{port}"
        path = self.config.kubeconfig or Path(self._tmp.name) / "kubeconfig"
        self.kubeconfig = write_kubeconfig(
            path, self.url, ca_pem=certificate.ca_pem if certificate else None
        )
        self.simulator.start()
        if self.config.state_file is not None:
            self._saver = asyncio.get_running_loop().create_task(
                self._save_loop(), name="kubesim-state-saver"
            )
        log.info("kubesim_started", url=self.url, kubeconfig=str(self.kubeconfig))
        return self.url

    def _bootstrap(self) -> None:
        state = self.config.state_file
        if state is not None and state.exists():
            for obj in self.store.load(state):
                if obj.get("kind") == "CustomResourceDefinition":
                    self.cluster.register_crd(obj)
            log.info("kubesim_state_loaded", path=str(state), objects=self.store.rv)
        ns_type = self.registry.lookup("", "v1", "namespaces")
        for name in SYSTEM_NAMESPACES:
            if self.store.get(NAMESPACES, "", name) is None:
                self.cluster.create(ns_type, "", {"metadata": {"name": name}})
        services = self.registry.lookup("", "v1", "services")
        if self.store.get(services.storage_key, "default", "kubernetes") is None:
            self.cluster.create(services, "default", KUBERNETES_SERVICE)

    async def _save_loop(self) -> None:
        assert self.config.state_file is not None
        while True:
            await asyncio.sleep(self.config.save_interval)
            if self.store.dirty:
                self.store.save(self.config.state_file)

    async def stop(self) -> None:
        self.api.close_watches()
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        await self.simulator.stop()
        if self.config.state_file is not None:
            self.store.save(self.config.state_file)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        log.info("kubesim_stopped", url=self.url)
