"""The registry's table: replica snapshots and channels by address, read by routing and the hub.

It only stores and tells: every change is announced to the listeners (the event hub, the
passthrough); contacting replicas and following their health is the registry's job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from coordinator.server.replicas import Listener, RegistryChange, Replica
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb

__all__ = ["ReplicaTable"]

_log = structlog.get_logger(__name__)


class ReplicaTable:
    """Replicas by address with their shared channels; listeners hear about each change."""

    def __init__(self) -> None:
        self._replicas: dict[str, Replica] = {}
        self._by_mesh: dict[str, tuple[Replica, ...]] = {}  # cache, emptied on every change
        self._channels: dict[str, Any] = {}
        self._listeners: list[Listener] = []

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

    # -- changing (the registry's part) ----------------------------------------------------

    def _put(self, replica: Replica, channel: Any) -> None:
        """A new replica and its channel; listeners hear it was added."""
        self._replicas[replica.address] = replica
        self._by_mesh.clear()
        self._channels[replica.address] = channel
        self._notify(RegistryChange(kind="added", replica=replica))

    def _replace(self, replica: Replica) -> None:
        """A changed snapshot of a known replica; listeners hear of its new state."""
        if (
            self._replicas.get(replica.address) is None
            or self._replicas[replica.address] == replica
        ):
            return
        self._replicas[replica.address] = replica
        self._by_mesh.clear()
        self._notify(RegistryChange(kind="state", replica=replica))

    def _pop(self, address: str) -> tuple[Replica, Any] | None:
        """Forget a replica (not announced: the caller stops its work, then `_notify`)."""
        replica = self._replicas.pop(address, None)
        if replica is None:
            return None
        self._by_mesh.clear()
        return replica, self._channels.pop(address)

    def _clear(self) -> list[Any]:
        """Forget every replica; returns their channels to close."""
        channels = list(self._channels.values())
        self._channels.clear()
        self._replicas.clear()
        self._by_mesh.clear()
        return channels

    def _notify(self, change: RegistryChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                _log.exception("registry.listener_failed", change=change.kind)
