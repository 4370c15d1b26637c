"""The coordinator's performance-test RPCs, served by `coordinator.perf.service`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from coordinator.server.rpc_group import RpcGroup
from meshplane.perf.v1 import perf_pb2 as perf_pb

__all__ = ["PerformanceTestRpcs"]


class PerformanceTestRpcs(RpcGroup):
    """RunPerformanceTest, ListPerformanceResults, GetPerformanceResult,
    ComparePerformanceResults."""

    async def RunPerformanceTest(
        self, request: perf_pb.RunPerformanceTestRequest, context: Any
    ) -> AsyncIterator[perf_pb.RunPerformanceTestResponse]:
        """Progress about once a second, then the stored result."""
        async for response in self._parts.perf.RunPerformanceTest(request, context):
            yield response

    async def ListPerformanceResults(
        self, request: perf_pb.ListPerformanceResultsRequest, context: Any
    ) -> perf_pb.ListPerformanceResultsResponse:
        """Stored results, newest first, filtered and paged."""
        return await self._parts.perf.ListPerformanceResults(request, context)

    async def GetPerformanceResult(
        self, request: perf_pb.GetPerformanceResultRequest, context: Any
    ) -> perf_pb.GetPerformanceResultResponse:
        """One stored result."""
        return await self._parts.perf.GetPerformanceResult(request, context)

    async def ComparePerformanceResults(
        self, request: perf_pb.ComparePerformanceResultsRequest, context: Any
    ) -> perf_pb.ComparePerformanceResultsResponse:
        """Stored results side by side, the first as the baseline."""
        return await self._parts.perf.ComparePerformanceResults(request, context)
