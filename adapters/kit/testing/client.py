"""An asynchronous gRPC client of one adapter, with the waits a test needs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc

__all__ = ["TERMINAL", "AdapterClient", "OperationDidNotSucceed"]

TERMINAL = frozenset(
    {
        pb.OPERATION_STATE_SUCCEEDED,
        pb.OPERATION_STATE_FAILED,
        pb.OPERATION_STATE_CANCELLED,
        pb.OPERATION_STATE_INTERRUPTED,
    }
)
"""The states an operation never leaves."""


class OperationDidNotSucceed(AssertionError):
    """`AdapterClient.run`'s operation ended otherwise than SUCCEEDED (an AssertionError, so a
    test expecting success fails rather than errors)."""

    def __init__(self, operation: str, done: pb.Operation) -> None:
        state = pb.OperationState.Name(done.state)
        super().__init__(f"{operation} ended {state}: {done.error}")
        self.operation = done


class AdapterClient:
    """An async gRPC channel to one adapter."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = pb_grpc.MeshAdapterServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def wait_serving(self, within: float = 20.0) -> None:
        """Poll the health service until SERVING."""
        deadline = time.monotonic() + within
        while True:
            try:
                reply = await self.health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("adapter never reported SERVING")
            await asyncio.sleep(0.01)

    async def apply(
        self,
        operation: str,
        *,
        operation_id: str,
        mesh_version: str = "",
        namespace: str = "",
        delete: bool = False,
        parameters: dict[str, str] | None = None,
        custom_body: str = "",
        username: str = "e2e",
    ) -> pb.ApplyOperationResponse:
        request = pb.ApplyOperationRequest(
            operation_id=operation_id,
            operation=operation,
            mesh_version=mesh_version,
            namespace=namespace,
            delete=delete,
            parameters=parameters or {},
            custom_body=custom_body,
            username=username,
        )
        response: pb.ApplyOperationResponse = await self.stub.ApplyOperation(request, timeout=10)
        return response

    wait_seconds = 60.0
    """How long `wait` and `run` wait for an operation by default."""

    async def wait(self, operation_id: str, within: float | None = None) -> pb.Operation:
        """Poll GetOperation until the operation is terminal."""
        within = self.wait_seconds if within is None else within
        deadline = time.monotonic() + within
        while True:
            reply = await self.stub.GetOperation(
                pb.GetOperationRequest(operation_id=operation_id), timeout=5
            )
            if reply.operation.state in TERMINAL:
                operation: pb.Operation = reply.operation
                return operation
            if time.monotonic() > deadline:
                raise TimeoutError(f"{operation_id} still {reply.operation.state} after {within}s")
            await asyncio.sleep(0.01)

    async def run(self, operation: str, *, operation_id: str, **kwargs: Any) -> pb.Operation:
        """Apply and wait; fails the test with the error detail when it did not succeed."""
        await self.apply(operation, operation_id=operation_id, **kwargs)
        done = await self.wait(operation_id)
        if done.state != pb.OPERATION_STATE_SUCCEEDED:
            raise OperationDidNotSucceed(operation, done)
        return done
