"""``meshplane.coordinator.v1.CoordinatorService``: the coordinator's front door.

Requests are checked and converted here; routing, the registry and the store do the work. Errors
carry what the caller needs to act: which mesh is unknown and which ones exist, which replicas
are unhealthy and why, which address could not be reached. The RPCs live in one module per group
(``adapter_rpcs``, ``mesh_rpcs``, ``operation_rpcs``, ``history_rpcs``, ``event_rpcs``,
``perf_rpcs``) over the shared parts of ``rpc_group``.
"""

from __future__ import annotations

from collections.abc import Callable

from coordinator.perf.service import PerformanceRpcs
from coordinator.server.adapter_rpcs import AdapterRpcs
from coordinator.server.event_rpcs import EventRpcs
from coordinator.server.follower_state import FollowerStatus
from coordinator.server.history_rpcs import HistoryRpcs
from coordinator.server.mesh_rpcs import MeshRpcs
from coordinator.server.operation_admission import OperationAdmission
from coordinator.server.operation_rpcs import OperationRpcs
from coordinator.server.perf_rpcs import PerformanceTestRpcs
from coordinator.server.registry import Registry
from coordinator.server.routing import Router
from coordinator.server.rpc_group import EventSource, ServicerParts
from coordinator.store.base import Store
from meshplane.coordinator.v1 import coordinator_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "CoordinatorServicer"]

SERVICE_NAME = "meshplane.coordinator.v1.CoordinatorService"


class CoordinatorServicer(
    AdapterRpcs,
    MeshRpcs,
    OperationRpcs,
    HistoryRpcs,
    EventRpcs,
    PerformanceTestRpcs,
    pb_grpc.CoordinatorServiceServicer,
):
    """Every RPC of the coordinator service (a contract test keeps the list complete)."""

    def __init__(
        self,
        *,
        registry: Registry,
        router: Router,
        store: Store,
        events: EventSource | None,
        perf: PerformanceRpcs | None = None,
        feed_status: Callable[[str], FollowerStatus | None] | None = None,
        admission: OperationAdmission | None = None,
    ) -> None:
        super().__init__(
            ServicerParts(
                registry=registry,
                router=router,
                store=store,
                admission=admission or OperationAdmission(store, registry),
                events=events,
                perf=perf or PerformanceRpcs(store),
                feed_status=feed_status,
            )
        )
