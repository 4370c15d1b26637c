"""The coordinator's history RPCs: pages of the stored operation history and audit trail."""

from __future__ import annotations

from typing import Any

import grpc

from coordinator.server import messages
from coordinator.server.identity.audit_messages import audit_filter, audit_record_to_pb
from coordinator.server.rpc_group import RpcGroup, abort
from meshplane.coordinator.v1 import coordinator_pb2 as pb

__all__ = ["DEFAULT_HISTORY_PAGE", "MAX_HISTORY_PAGE", "HistoryRpcs"]

DEFAULT_HISTORY_PAGE = 50
MAX_HISTORY_PAGE = 500


def _page_size(requested: int) -> int:
    return min(requested or DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)


class HistoryRpcs(RpcGroup):
    """ListOperationHistory, ListAuditRecords."""

    async def ListOperationHistory(
        self, request: pb.ListOperationHistoryRequest, context: Any
    ) -> pb.ListOperationHistoryResponse:
        """One page of the store's history, newest first."""
        try:
            filter = messages.history_filter(request)
            records, token = await self._parts.store.list_operations(
                filter, page_size=_page_size(request.page_size), page_token=request.page_token
            )
        except ValueError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ListOperationHistoryResponse(
            operations=[messages.record_to_pb(r) for r in records], next_page_token=token
        )

    async def ListAuditRecords(
        self, request: pb.ListAuditRecordsRequest, context: Any
    ) -> pb.ListAuditRecordsResponse:
        """One page of the audit trail, newest first."""
        try:
            records, token = await self._parts.store.list_audit_records(
                audit_filter(request),
                page_size=_page_size(request.page_size),
                page_token=request.page_token,
            )
        except ValueError as exc:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.ListAuditRecordsResponse(
            records=[audit_record_to_pb(r) for r in records], next_page_token=token
        )
