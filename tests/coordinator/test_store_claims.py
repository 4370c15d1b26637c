"""Claiming an operation_id in the store before forwarding (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from coordinator.store import Store
from tests.coordinator.test_store import make_operation


async def test_one_claim_wins_and_only_an_unanswered_claim_is_released(store: Store) -> None:
    claim = replace(make_operation(1), adapter="", state="pending")
    rivals = [replace(claim, mesh=mesh) for mesh in ("istio", "linkerd", "consul")]
    outcomes = await asyncio.gather(*(store.claim_operation(r) for r in rivals))
    winners = [r for r, taken in zip(rivals, outcomes, strict=True) if taken is None]
    assert len(winners) == 1
    assert all(taken is not None and taken.mesh == winners[0].mesh for taken in outcomes if taken)

    assert await store.release_operation(claim.operation_id)
    assert await store.get_operation(claim.operation_id) is None
    assert await store.claim_operation(claim) is None
    await store.save_operation(replace(claim, adapter="istio/a1"))  # the adapter answered
    assert not await store.release_operation(claim.operation_id)
    assert await store.get_operation(claim.operation_id) is not None
