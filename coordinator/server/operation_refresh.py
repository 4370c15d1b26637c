"""Operation records brought up to date from the adapter whose events say they changed.

Before a batch of events is stored, each operation whose state the batch changes is read from
its adapter (GetOperation) and saved, so a watcher that sees an operation's final event finds
its final record too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc
import structlog

from coordinator.server.event_records import TERMINAL_STATES
from coordinator.server.follower_state import FollowerState
from coordinator.server.messages import record_from_operation, state_name
from coordinator.store.base import Store
from coordinator.store.records import OperationRecord
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = ["OperationRefresher"]

_log = structlog.get_logger(__name__)

_REMEMBERED_STATES = 10_000


class OperationRefresher:
    """Saves the current record of operations an adapter's events report as changed."""

    def __init__(self, store: Store, *, call_timeout_seconds: float) -> None:
        self._store = store
        self._timeout = call_timeout_seconds

    async def refresh_batch(
        self, follower: FollowerState, stub: Any, batch: list[pb.Event]
    ) -> None:
        """Every operation whose latest state in ``batch`` is new to the follower."""
        latest: dict[str, str] = {}
        for event in batch:
            if event.operation_id and event.operation_state != pb.OPERATION_STATE_UNSPECIFIED:
                latest[event.operation_id] = state_name(event.operation_state)
        for operation_id, state in latest.items():
            if follower.operation_states.get(operation_id) == state:
                continue
            await self._refresh(follower, stub, operation_id, state)
            follower.operation_states[operation_id] = state
        if len(follower.operation_states) > _REMEMBERED_STATES:
            follower.operation_states.clear()

    async def _refresh(
        self, follower: FollowerState, stub: Any, operation_id: str, state: str
    ) -> None:
        """Record the operation's current state from its adapter, so history shows the outcome."""
        previous = await self._store.get_operation(operation_id)
        if previous is not None and previous.mesh != follower.mesh:
            # The id names another mesh's operation here (an adapter reached directly reused
            # it): never let this adapter's record replace that history row.
            _log.warning(
                "hub.operation_id_of_another_mesh",
                address=follower.address,
                operation_id=operation_id,
                mesh=follower.mesh,
                recorded_mesh=previous.mesh,
            )
            return
        try:
            response = await stub.GetOperation(
                pb.GetOperationRequest(operation_id=operation_id), timeout=self._timeout
            )
        except grpc.RpcError as exc:
            _log.warning(
                "hub.operation_refresh_failed",
                address=follower.address,
                operation_id=operation_id,
                error=f"{exc.code()}: {exc.details()}",
            )
            await self._save_state_only(previous, state)
            return
        record = record_from_operation(
            response.operation, mesh=follower.mesh, adapter_address=follower.address
        )
        if previous is not None:
            # Keep what the client asked through the coordinator; take the outcome from here.
            record = replace(record, request=previous.request or record.request)
        await self._store.save_operation(record)

    async def _save_state_only(self, previous: OperationRecord | None, state: str) -> None:
        """The adapter did not answer: record the state its event reported (never moving a
        finished operation back to a running state)."""
        if previous is None or previous.state == state:
            return
        if previous.state in TERMINAL_STATES and state not in TERMINAL_STATES:
            return
        await self._store.save_operation(
            replace(previous, state=state, updated_at=datetime.now(UTC))
        )
