"""Open cluster sessions kept between operations, one per cluster the adapter talks to.

Connecting costs more than most operations' requests: the client builds a TLS context (tens of
milliseconds even for plain HTTP), opens connections, and discovery is read from scratch. An
adapter is a long-running server, so, like a controller's informers, it keeps one
`ClusterSession` per cluster: the connection pool stays warm and discovery is re-validated per
operation (the served group-versions, two requests) rather than re-read.

A session is keyed by where its kubeconfig comes from: the adapter's file (with its size and
modification time, so a rewritten kubeconfig, e.g. rotated credentials, gets a new session) plus
the context, or a request's judged kubeconfig (`request_kubeconfigs`) by its identity. Sessions
leased by running operations are never closed under them; idle ones beyond ``max_idle`` are
closed least recently used first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from adapters.kit.apply.api_requests import RetrySettings
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.records import ClusterTarget

__all__ = ["ClusterSessions"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SessionKey:
    """Where a session's kubeconfig comes from: ``source`` (a judged request kubeconfig by its
    identity, the adapter's file by path, or the defaults), the file's ``version`` (size and
    mtime) and the context."""

    source: str
    context: str
    version: str = ""


@dataclass(eq=False)
class _Entry:
    session: ClusterSession
    leases: int = 0
    retired: bool = False
    used: float = field(default_factory=time.monotonic)


class ClusterSessions:
    """Leases a shared `ClusterSession` per cluster target; `aclose` closes them all."""

    def __init__(
        self,
        *,
        kubeconfig: Path | None = None,
        kube_context: str = "",
        on_retry: Callable[[], None] | None = None,
        retry: RetrySettings | None = None,
        max_idle: int = 8,
    ) -> None:
        self._kubeconfig = kubeconfig
        self._retry = retry
        self._kube_context = kube_context
        self._on_retry = on_retry
        self._max_idle = max_idle
        self._entries: dict[SessionKey, _Entry] = {}
        self._connecting: dict[SessionKey, asyncio.Lock] = {}
        self._closed = False

    def _key(self, target: ClusterTarget) -> SessionKey:
        if target.kubeconfig is not None:
            return SessionKey(source=f"judged:{target.kubeconfig.identity}", context="")
        context = target.context or self._kube_context
        path = self._kubeconfig
        if path is None:
            return SessionKey(source="default", context=context)
        try:
            stat = path.stat()
            version = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            version = "missing"  # connecting reports the problem
        return SessionKey(source=f"file:{path}", context=context, version=version)

    async def _connect(self, target: ClusterTarget) -> ClusterSession:
        if target.kubeconfig is not None:
            return await ClusterSession.connect(
                kubeconfig=target.kubeconfig,
                name=target.name,
                retry=self._retry,
                on_retry=self._on_retry,
            )
        return await ClusterSession.connect(
            kubeconfig_path=self._kubeconfig,
            context=target.context or self._kube_context or None,
            name=target.name,
            retry=self._retry,
            on_retry=self._on_retry,
        )

    async def _acquire(self, target: ClusterTarget) -> _Entry:
        if self._closed:
            raise RuntimeError("the adapter is stopping; no new cluster sessions")
        key = self._key(target)
        lock = self._connecting.setdefault(key, asyncio.Lock())
        async with lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = _Entry(session=await self._connect(target))
                await self._retire_superseded(key)
                self._entries[key] = entry
            entry.leases += 1
            entry.used = time.monotonic()
            return entry

    async def _retire_superseded(self, key: SessionKey) -> None:
        """An adapter kubeconfig file that changed replaces the session built from it."""
        for old_key, old in list(self._entries.items()):
            if (old_key.source, old_key.context) == (key.source, key.context) and old_key != key:
                del self._entries[old_key]
                old.retired = True
                if old.leases == 0:
                    await old.session.close()

    async def _release(self, entry: _Entry) -> None:
        entry.leases -= 1
        entry.used = time.monotonic()
        if entry.leases:
            return
        if entry.retired or self._closed:
            await entry.session.close()
            return
        idle = sorted(
            (e for e in self._entries.values() if e.leases == 0),
            key=lambda e: e.used,
        )
        for stale in idle[: max(0, len(idle) - self._max_idle)]:
            for key, candidate in list(self._entries.items()):
                if candidate is stale:
                    del self._entries[key]
                    lock = self._connecting.get(key)
                    if lock is not None and not lock.locked():
                        del self._connecting[key]
            await stale.session.close()

    @contextlib.asynccontextmanager
    async def lease(self, target: ClusterTarget) -> AsyncIterator[ClusterSession]:
        """The target's session for the duration of one operation (connected on first use)."""
        entry = await self._acquire(target)
        try:
            yield entry.session
        finally:
            await self._release(entry)

    async def warm(self, target: ClusterTarget) -> None:
        """Connect and read discovery ahead of the first operation; failures are only logged
        (the cluster may come up after the adapter; the first operation reports it then)."""
        started = time.monotonic()
        try:
            async with self.lease(target) as session:
                await asyncio.gather(session.server_version(), session.api_versions())
        except Exception as exc:
            log.warning("cluster.warm_failed", cluster=target.name, error=str(exc))
            return
        log.info(
            "cluster.warmed",
            cluster=target.name,
            seconds=round(time.monotonic() - started, 3),
        )

    async def aclose(self) -> None:
        """Close every idle session; leased ones close when their operation lets go."""
        self._closed = True
        entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            entry.retired = True
            if entry.leases == 0:
                await entry.session.close()
