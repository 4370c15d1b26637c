"""The coordinator's WatchEvents: stored events after a cursor, then live ones, from the hub."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from coordinator.server import messages
from coordinator.server.rpc_group import RpcGroup, abort
from coordinator.store.records import StoredEvent
from meshplane.coordinator.v1 import coordinator_pb2 as pb

__all__ = ["EventRpcs"]


class EventRpcs(RpcGroup):
    """WatchEvents."""

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: Any
    ) -> AsyncIterator[pb.WatchEventsResponse]:
        """Stored events after the cursor, then live ones, from the event hub."""
        events = self._parts.events
        if events is None:
            await abort(
                context, grpc.StatusCode.UNIMPLEMENTED, "this coordinator runs no event hub"
            )
        await self._check_cursor(context, request.after_cursor)
        addresses: dict[str, str] = {}
        stream = events.watch(
            mesh=request.mesh.strip().lower() or None,
            operation_id=request.operation_id or None,
            min_severity=messages.severity_name(request.min_severity),
            after_cursor=request.after_cursor,
        )
        async with contextlib.aclosing(stream):  # unregister the watcher when the client leaves
            async for stored in stream:
                yield messages.event_from_payload(
                    stored, adapter_address=self._address_of(stored, addresses)
                )

    async def _check_cursor(self, context: Any, after_cursor: int) -> None:
        """OUT_OF_RANGE, saying how to resume, for a cursor past the newest event or one whose
        following events retention deleted."""
        store = self._parts.store
        pruned = await store.pruned_through_cursor()
        newest = max(await store.latest_cursor(), pruned)
        if after_cursor > newest:
            await abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"cursor {after_cursor} is beyond the newest event {newest}; the store "
                "was reset? resume with 0",
            )
        if 0 < after_cursor < pruned:
            await abort(
                context,
                grpc.StatusCode.OUT_OF_RANGE,
                f"events after cursor {after_cursor} up to {pruned} were deleted by "
                f"retention; resume with after_cursor={pruned} (the oldest events kept "
                "follow), or 0 for every event kept",
            )

    def _address_of(self, stored: StoredEvent, cache: dict[str, str]) -> str:
        """The replica whose event stream a stored event came from (its ``source``)."""
        source = stored.event.source
        if source not in cache:
            found = next(
                (
                    r.address
                    for r in self._parts.registry.replicas(stored.event.mesh or None)
                    if f"{r.mesh}/{r.event_stream_id}" == source
                ),
                "",
            )
            if not found:
                return ""  # not known (yet): do not remember the miss
            cache[source] = found
        return cache[source]
