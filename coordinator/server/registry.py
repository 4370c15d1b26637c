"""Every adapter replica the coordinator knows, its health, identity and catalogue.

Replicas come from three sources (static flags, RegisterAdapter, Kubernetes discovery) and all
are treated alike once known: one shared channel each, one health Watch stream each (see
``health_watch``), GetInfo + ListOperations on registration and again whenever the health stream
reconnects (the replica may have restarted with another build or event stream). Listeners (the
event hub) hear about every added, removed or changed replica (see ``replica_table``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import structlog

from coordinator.server.adapter_link import AdapterLink, LinkRefused
from coordinator.server.health_watch import HealthReport, describe_rpc_error, follow_health
from coordinator.server.replica_identity import ReplicaIdentity, identify, with_identity
from coordinator.server.replica_table import ReplicaTable
from coordinator.server.replicas import (
    Dialer,
    RegistrationError,
    RegistryChange,
    Replica,
    ReplicaState,
    Source,
)
from serving.background_tasks import BackgroundTasks
from serving.input_quoting import quoted

__all__ = ["Registry"]

_log = structlog.get_logger(__name__)


class Registry(ReplicaTable):
    """Replicas by address, their channels and health followers; owned by the coordinator."""

    def __init__(
        self,
        dial: Dialer,
        *,
        call_timeout: float = 10.0,
        health_backoff_initial: float = 0.1,
        health_backoff_max: float = 5.0,
        link: AdapterLink | None = None,
    ) -> None:
        super().__init__()
        self._dial = dial
        self._link = link
        """With a link token: each replica proves it holds it before anything else is asked of
        it (at registration and whenever its health stream reconnects)."""
        self._call_timeout = call_timeout
        self._backoff = (health_backoff_initial, health_backoff_max)
        self._needs_refresh: set[str] = set()
        self._tasks = BackgroundTasks(owner="registry")
        self._followers: dict[str, asyncio.Task[Any]] = {}
        self._closing = 0
        self._closed = False

    # -- adding ----------------------------------------------------------------------------

    def add(self, address: str, *, mesh: str, source: Source) -> Replica:
        """Add a replica known by configuration (static or Kubernetes) without contacting it.

        It starts CONNECTING; the health follower fetches GetInfo + ListOperations once the
        replica reports SERVING and checks that it manages ``mesh``.
        """
        existing = self._replicas.get(address)
        if existing is not None:
            return existing
        channel = self._dial(address)
        replica = Replica(
            address=address, mesh=mesh, source=source, state_change_time=datetime.now(UTC)
        )
        self._insert(replica, channel, needs_refresh=True)
        return replica

    async def register(
        self,
        address: str,
        *,
        mesh: str = "",
        source: Source = Source.DYNAMIC,
        seconds: float | None = None,
    ) -> Replica:
        """Contact the replica (GetInfo, ListOperations), check its mesh, then add it.

        ``seconds`` bounds the contact (the caller's remaining deadline); default: the call
        timeout.

        Raises `RegistrationError`: UNAVAILABLE when unreachable (naming the address and the
        dial error), FAILED_PRECONDITION when it manages another mesh than ``mesh`` or does not
        prove it is one of ours (the link token).
        """
        mesh = mesh.strip().lower()
        existing = self._registered(address, mesh)
        if existing is not None:
            return existing
        channel = self._dial_checked(address)
        try:
            identity = await self._contact(channel, address, mesh, seconds)
        except BaseException:
            await channel.close()
            raise
        existing = self._replicas.get(address)
        if existing is not None:  # registered concurrently while we waited
            await channel.close()
            return existing
        reported = identity.info.mesh
        replica = with_identity(
            Replica(
                address=address, mesh=reported, source=source, state_change_time=datetime.now(UTC)
            ),
            identity,
        )
        self._insert(replica, channel, needs_refresh=False)
        _log.info("registry.registered", address=address, mesh=reported, source=source.value)
        return replica

    def _registered(self, address: str, mesh: str) -> Replica | None:
        """The replica already at ``address`` (refused when it manages another mesh)."""
        existing = self._replicas.get(address)
        if existing is not None and mesh and existing.mesh != mesh:
            raise RegistrationError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{address} is already registered for mesh {existing.mesh!r}, not {quoted(mesh)}",
            )
        return existing

    def _dial_checked(self, address: str) -> Any:
        try:
            return self._dial(address)
        except ValueError as exc:  # InsecureTransportError and malformed targets
            raise RegistrationError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc

    async def _contact(
        self, channel: Any, address: str, mesh: str, seconds: float | None
    ) -> ReplicaIdentity:
        """The replica's identity, checked: it proves the link and manages ``mesh`` (if given)."""
        try:
            identity = await self._identify(channel, address, seconds)
        except LinkRefused as exc:
            raise RegistrationError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        except grpc.aio.AioRpcError as exc:
            raise RegistrationError(
                grpc.StatusCode.UNAVAILABLE,
                f"adapter at {address} is unreachable: {describe_rpc_error(exc)}",
            ) from exc
        reported = identity.info.mesh
        if mesh and reported != mesh:
            raise RegistrationError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"adapter at {address} manages mesh {quoted(reported)}, not the expected "
                f"{quoted(mesh)}",
            )
        return identity

    def _insert(self, replica: Replica, channel: Any, *, needs_refresh: bool) -> None:
        if self._closed:
            raise RuntimeError("registry is closed")
        if needs_refresh:
            self._needs_refresh.add(replica.address)
        self._put(replica, channel)
        self._followers[replica.address] = self._tasks.start(
            f"health:{replica.address}", self._follow(replica.address, channel)
        )

    # -- removing --------------------------------------------------------------------------

    async def remove(self, address: str) -> Replica | None:
        """Forget a replica: stop its health follower, close its channel, tell listeners."""
        taken = self._take(address)
        if taken is None:
            return None
        replica, follower, channel = taken
        await _close_replica(follower, channel)
        return replica

    def discard(self, address: str) -> Replica | None:
        """Like :meth:`remove` from synchronous code: forgotten now, channel closed soon."""
        taken = self._take(address)
        if taken is None:
            return None
        replica, follower, channel = taken
        self._closing += 1
        self._tasks.start(f"close:{address}#{self._closing}", _close_replica(follower, channel))
        return replica

    def _take(self, address: str) -> tuple[Replica, asyncio.Task[Any] | None, Any] | None:
        popped = self._pop(address)
        if popped is None:
            return None
        replica, channel = popped
        self._needs_refresh.discard(address)
        follower = self._followers.pop(address, None)
        if follower is not None:
            follower.cancel()
        self._notify(RegistryChange(kind="removed", replica=replica))
        _log.info("registry.removed", address=address, mesh=replica.mesh)
        return replica, follower, channel

    async def close(self) -> None:
        """Stop every health follower and close every channel."""
        self._closed = True
        self._followers.clear()
        await self._tasks.stop(grace_seconds=5.0)
        for channel in self._clear():
            await channel.close()

    # -- following health ------------------------------------------------------------------

    async def _follow(self, address: str, channel: Any) -> None:
        async def on_report(report: HealthReport) -> None:
            await self._on_health(address, channel, report)

        initial, maximum = self._backoff
        await follow_health(channel, on_report, backoff_initial=initial, backoff_max=maximum)

    async def _on_health(self, address: str, channel: Any, report: HealthReport) -> None:
        if self._channels.get(address) is not channel:
            return  # removed (or replaced) meanwhile
        if not report.serving:
            if report.stream_lost:
                self._needs_refresh.add(address)  # it may come back as a new process
                if self._link is not None:
                    self._link.forget(address)  # which must prove itself again
            self._set_state(address, ReplicaState.NOT_SERVING, report.error)
            return
        if address in self._needs_refresh and not await self._refresh(address, channel):
            return
        self._set_state(address, ReplicaState.SERVING, "")

    async def _refresh(self, address: str, channel: Any) -> bool:
        """Re-read a (re)connected replica's identity; False when it must stay out of rotation.

        A refused link proof takes it out of rotation until it reconnects (as another process)
        and proves itself; any other error makes the health follower retry.
        """
        try:
            identity = await self._identify(channel, address)
        except LinkRefused as exc:
            self._set_state(address, ReplicaState.NOT_SERVING, str(exc))
            return False
        current = self._replicas.get(address)
        if current is None or self._channels.get(address) is not channel:
            return False
        if identity.info.mesh != current.mesh:
            raise RegistrationError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"adapter at {address} manages mesh {identity.info.mesh!r}, not {current.mesh!r}",
            )
        self._needs_refresh.discard(address)
        self._replace(with_identity(current, identity))
        return True

    def _set_state(self, address: str, state: ReplicaState, error: str) -> None:
        current = self._replicas.get(address)
        if current is None:
            return
        if current.state is state and current.last_error == error:
            return
        changed = current.state is not state
        updated = replace(
            current,
            state=state,
            last_error=error or ("" if state is ReplicaState.SERVING else current.last_error),
            state_change_time=datetime.now(UTC) if changed else current.state_change_time,
        )
        if changed:
            _log.info(
                "registry.replica_state",
                address=address,
                mesh=current.mesh,
                state=state.value,
                error=error or None,
            )
        self._replace(updated)

    async def _identify(
        self, channel: Any, address: str, seconds: float | None = None
    ) -> ReplicaIdentity:
        timeout = self._call_timeout if seconds is None else seconds
        return await identify(channel, address, seconds=timeout, link=self._link)


async def _close_replica(follower: asyncio.Task[Any] | None, channel: Any) -> None:
    if follower is not None:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    await channel.close()
