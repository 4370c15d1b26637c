"""Every adapter replica the coordinator knows, its health, identity and catalogue.

Replicas come from three sources (static flags, RegisterAdapter, Kubernetes discovery) and all
are treated alike once known: one shared channel each, one health Watch stream each (see
``health_watch``), GetInfo + ListOperations on registration and again whenever the health stream
reconnects (the replica may have restarted with another build or event stream). Listeners (the
event hub) hear about every added, removed or changed replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

import grpc
import grpc.aio
import structlog

from coordinator.server.adapter_link import AdapterLink, LinkRefused
from coordinator.server.health_watch import HealthReport, describe_rpc_error, follow_health
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from serving.background_tasks import BackgroundTasks
from serving.input_quoting import quoted

__all__ = [
    "Dialer",
    "RegistrationError",
    "Registry",
    "RegistryChange",
    "Replica",
    "ReplicaState",
    "Source",
]

_log = structlog.get_logger(__name__)


class ReplicaState(enum.Enum):
    """Health as the coordinator sees it; only SERVING replicas receive traffic."""

    CONNECTING = "connecting"
    SERVING = "serving"
    NOT_SERVING = "not_serving"


class Source(enum.Enum):
    """How the coordinator learned about a replica."""

    STATIC = "static"
    DYNAMIC = "dynamic"
    KUBERNETES = "kubernetes"


@dataclass(frozen=True, kw_only=True)
class Replica:
    """A snapshot of one replica; the registry replaces it on every change."""

    address: str
    mesh: str
    source: Source
    state: ReplicaState = ReplicaState.CONNECTING
    adapter_version: str = ""
    contract_version: str = ""
    git_sha: str = ""
    capabilities: tuple[str, ...] = ()
    event_stream_id: str = ""
    last_error: str = ""
    state_change_time: datetime
    operations: tuple[adapter_pb.OperationDescriptor, ...] = ()
    """The adapter's catalogue (ListOperations), refreshed whenever the replica reconnects."""

    @property
    def serving(self) -> bool:
        """True when the replica is in rotation."""
        return self.state is ReplicaState.SERVING


@dataclass(frozen=True, kw_only=True)
class RegistryChange:
    """One change listeners hear about; ``replica`` is the snapshot after (or at removal)."""

    kind: Literal["added", "removed", "state"]
    replica: Replica


class RegistrationError(Exception):
    """A replica cannot be registered or removed; ``code`` is the gRPC status to answer with."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Dialer = Callable[[str], Any]
"""Opens a ``grpc.aio.Channel`` to an address with the coordinator's TLS settings."""

Listener = Callable[[RegistryChange], None]


@dataclass(frozen=True, kw_only=True)
class _Identity:
    info: adapter_pb.GetInfoResponse
    operations: tuple[adapter_pb.OperationDescriptor, ...]


class Registry:
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
        self._dial = dial
        self._link = link
        """With a link token: each replica proves it holds it before anything else is asked of
        it (at registration and whenever its health stream reconnects)."""
        self._call_timeout = call_timeout
        self._backoff = (health_backoff_initial, health_backoff_max)
        self._replicas: dict[str, Replica] = {}
        self._by_mesh: dict[str, tuple[Replica, ...]] = {}  # cache, emptied on every change
        self._channels: dict[str, Any] = {}
        self._needs_refresh: set[str] = set()
        self._listeners: list[Listener] = []
        self._tasks = BackgroundTasks(owner="registry")
        self._followers: dict[str, asyncio.Task[Any]] = {}
        self._closing = 0
        self._closed = False

    # -- reading ---------------------------------------------------------------------------

    def replicas(self, mesh: str | None = None) -> list[Replica]:
        """Known replicas (of one mesh when given), sorted by address."""
        if mesh is None:
            return sorted(self._replicas.values(), key=lambda r: r.address)
        return list(self.mesh_replicas(mesh))

    def mesh_replicas(self, mesh: str) -> tuple[Replica, ...]:
        """``replicas(mesh)`` without a copy: the routing hot path reads it on every call."""
        found = self._by_mesh.get(mesh)
        if found is None:
            found = tuple(
                sorted(
                    (r for r in self._replicas.values() if r.mesh == mesh),
                    key=lambda r: r.address,
                )
            )
            self._by_mesh[mesh] = found
        return found

    def healthy(self, mesh: str) -> list[Replica]:
        """Replicas of ``mesh`` that are in rotation, sorted by address."""
        return [r for r in self.replicas(mesh) if r.serving]

    def meshes(self) -> list[str]:
        """Meshes with at least one known replica, sorted."""
        return sorted({r.mesh for r in self._replicas.values()})

    def get(self, address: str) -> Replica | None:
        """The replica at ``address``, or None."""
        return self._replicas.get(address)

    def channel(self, address: str) -> Any:
        """The shared ``grpc.aio.Channel`` of a known replica (KeyError when unknown)."""
        return self._channels[address]

    def catalogue(self, mesh: str) -> tuple[adapter_pb.OperationDescriptor, ...]:
        """The mesh's catalogue, from a serving replica when there is one."""
        candidates = sorted(self.replicas(mesh), key=lambda r: (not r.serving, not r.operations))
        return candidates[0].operations if candidates else ()

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Hear about every change; returns a function that removes the listener."""
        self._listeners.append(callback)

        def remove() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return remove

    # -- changing --------------------------------------------------------------------------

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
        existing = self._replicas.get(address)
        if existing is not None:
            if mesh and existing.mesh != mesh:
                raise RegistrationError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{address} is already registered for mesh {existing.mesh!r}, not "
                    f"{quoted(mesh)}",
                )
            return existing
        try:
            channel = self._dial(address)
        except ValueError as exc:  # InsecureTransportError and malformed targets
            raise RegistrationError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        try:
            identity = await self._identify(channel, address, seconds)
        except LinkRefused as exc:
            await channel.close()
            raise RegistrationError(grpc.StatusCode.FAILED_PRECONDITION, str(exc)) from exc
        except grpc.aio.AioRpcError as exc:
            await channel.close()
            raise RegistrationError(
                grpc.StatusCode.UNAVAILABLE,
                f"adapter at {address} is unreachable: {describe_rpc_error(exc)}",
            ) from exc
        except BaseException:
            await channel.close()
            raise
        reported = identity.info.mesh
        if mesh and reported != mesh:
            await channel.close()
            raise RegistrationError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"adapter at {address} manages mesh {quoted(reported)}, not the expected "
                f"{quoted(mesh)}",
            )
        existing = self._replicas.get(address)
        if existing is not None:  # registered concurrently while we waited
            await channel.close()
            return existing
        replica = _with_identity(
            Replica(
                address=address, mesh=reported, source=source, state_change_time=datetime.now(UTC)
            ),
            identity,
        )
        self._insert(replica, channel, needs_refresh=False)
        _log.info("registry.registered", address=address, mesh=reported, source=source.value)
        return replica

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
        replica = self._replicas.pop(address, None)
        if replica is None:
            return None
        self._by_mesh.clear()
        self._needs_refresh.discard(address)
        follower = self._followers.pop(address, None)
        if follower is not None:
            follower.cancel()
        channel = self._channels.pop(address)
        self._notify(RegistryChange(kind="removed", replica=replica))
        _log.info("registry.removed", address=address, mesh=replica.mesh)
        return replica, follower, channel

    async def close(self) -> None:
        """Stop every health follower and close every channel."""
        self._closed = True
        self._followers.clear()
        await self._tasks.stop(grace_seconds=5.0)
        channels = list(self._channels.values())
        self._channels.clear()
        self._replicas.clear()
        self._by_mesh.clear()
        for channel in channels:
            await channel.close()

    # -- internals -------------------------------------------------------------------------

    def _insert(self, replica: Replica, channel: Any, *, needs_refresh: bool) -> None:
        if self._closed:
            raise RuntimeError("registry is closed")
        self._replicas[replica.address] = replica
        self._by_mesh.clear()
        self._channels[replica.address] = channel
        if needs_refresh:
            self._needs_refresh.add(replica.address)
        self._notify(RegistryChange(kind="added", replica=replica))
        self._followers[replica.address] = self._tasks.start(
            f"health:{replica.address}", self._follow(replica.address, channel)
        )

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
        if address in self._needs_refresh:
            try:
                identity = await self._identify(channel, address)
            except LinkRefused as exc:
                # out of rotation until it reconnects (as another process) and proves itself
                self._set_state(address, ReplicaState.NOT_SERVING, str(exc))
                return
            # any other error makes the follower retry
            current = self._replicas.get(address)
            if current is None or self._channels.get(address) is not channel:
                return
            if identity.info.mesh != current.mesh:
                raise RegistrationError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"adapter at {address} manages mesh {identity.info.mesh!r}, "
                    f"not {current.mesh!r}",
                )
            self._needs_refresh.discard(address)
            self._replace(_with_identity(current, identity))
        self._set_state(address, ReplicaState.SERVING, "")

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

    def _replace(self, replica: Replica) -> None:
        if (
            self._replicas.get(replica.address) is None
            or self._replicas[replica.address] == replica
        ):
            return
        self._replicas[replica.address] = replica
        self._by_mesh.clear()
        self._notify(RegistryChange(kind="state", replica=replica))

    def _notify(self, change: RegistryChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                _log.exception("registry.listener_failed", change=change.kind)

    async def _identify(
        self, channel: Any, address: str, seconds: float | None = None
    ) -> _Identity:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._call_timeout if seconds is None else seconds)
        if self._link is not None:
            await self._link.verify(channel, address, max(0.0, deadline - loop.time()))
        stub = adapter_grpc.MeshAdapterServiceStub(channel)
        info = await stub.GetInfo(
            adapter_pb.GetInfoRequest(), timeout=max(0.0, deadline - loop.time())
        )
        listed = await stub.ListOperations(
            adapter_pb.ListOperationsRequest(), timeout=max(0.0, deadline - loop.time())
        )
        return _Identity(info=info, operations=tuple(listed.operations))


def _with_identity(replica: Replica, identity: _Identity) -> Replica:
    info = identity.info
    return replace(
        replica,
        adapter_version=info.adapter_version,
        contract_version=info.contract_version,
        git_sha=info.git_sha,
        capabilities=tuple(info.capabilities),
        event_stream_id=info.event_stream_id,
        operations=identity.operations,
    )


async def _close_replica(follower: asyncio.Task[Any] | None, channel: Any) -> None:
    if follower is not None:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    await channel.close()
