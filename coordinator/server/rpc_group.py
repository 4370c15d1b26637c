"""What every group of coordinator RPCs shares: the parts they call and the common answers.

The coordinator service is served by one class (`servicer.CoordinatorServicer`) made of one
group per kind of RPC (adapters, meshes, operations, history, events, performance tests); each
group reads the same `ServicerParts` and answers errors the same way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

import grpc
import grpc.aio

from coordinator.perf.service import PerformanceRpcs
from coordinator.server.follower_state import FollowerStatus
from coordinator.server.operation_admission import OperationAdmission
from coordinator.server.registry import Registry
from coordinator.server.routing import RouteError, Router
from coordinator.store.base import Store
from coordinator.store.records import StoredEvent
from serving.input_quoting import quoted

__all__ = ["EventSource", "RpcGroup", "ServicerParts", "abort", "relay"]


class EventSource(Protocol):
    """What WatchEvents needs from the event hub."""

    def watch(
        self,
        *,
        mesh: str | None,
        operation_id: str | None,
        min_severity: str | None,
        after_cursor: int,
    ) -> AsyncGenerator[StoredEvent, None]:
        """Stored events after ``after_cursor``, then live ones, in cursor order."""
        ...


@dataclass(frozen=True, kw_only=True)
class ServicerParts:
    """The coordinator's parts the RPCs work through."""

    registry: Registry
    router: Router
    store: Store
    admission: OperationAdmission
    events: EventSource | None
    """None: this coordinator runs no event hub (WatchEvents is UNIMPLEMENTED)."""
    perf: PerformanceRpcs
    feed_status: Callable[[str], FollowerStatus | None] | None
    """The event hub's follower of a replica address, for ListAdapters."""


async def abort(context: Any, code: Any, message: str) -> NoReturn:
    """End the call with ``code`` and ``message``."""
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


async def relay(context: Any, mesh: str, replica: str, error: Any) -> NoReturn:
    """An adapter's error, with where it came from when the adapter itself did not answer."""
    details = error.details() or ""
    if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        details = f"{mesh} adapter at {replica}: {details}"
    await abort(context, error.code(), details)


class RpcGroup:
    """Base of each group of RPCs: the shared parts and the checks most RPCs begin with."""

    def __init__(self, parts: ServicerParts) -> None:
        self._parts = parts

    async def _known_mesh(self, context: Any, mesh: str) -> str:
        """The request's mesh, normalised; INVALID_ARGUMENT when empty, NOT_FOUND when unknown."""
        mesh = mesh.strip().lower()
        registry = self._parts.registry
        if not mesh:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "mesh is required")
        if mesh not in registry.meshes():
            known = ", ".join(registry.meshes()) or "none registered"
            await abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"unknown mesh {quoted(mesh)}; known meshes: {known}",
            )
        return mesh

    async def _route(
        self, context: Any, mesh: str, invoke: Any, *, retry: bool, method: str
    ) -> Any:
        """Call a healthy replica of ``mesh``; routing and adapter errors end the call."""
        try:
            answer, _ = await self._parts.router.call(
                mesh,
                invoke,
                caller_remaining=context.time_remaining(),
                retry=retry,
                method=method,
            )
        except RouteError as exc:
            await abort(context, exc.code, exc.message)
        except grpc.aio.AioRpcError as exc:
            await abort(context, exc.code(), f"{mesh} adapter: {exc.details() or ''}")
        return answer
