"""The operations the suite starts: requests with their defaults, ApplyOperation timed, and
GetOperation polled until each is terminal; every run is remembered for later checks."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from adapters.conformance.suite_config import SuiteConfig
from adapters.conformance.verdicts import CheckFailed
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = [
    "CREATE_NAMESPACE",
    "PURGE_CRDS",
    "TERMINAL_STATES",
    "USERNAME",
    "OperationCalls",
    "OperationRun",
    "state_name",
]

TERMINAL_STATES = frozenset(
    {
        pb.OPERATION_STATE_SUCCEEDED,
        pb.OPERATION_STATE_FAILED,
        pb.OPERATION_STATE_CANCELLED,
        pb.OPERATION_STATE_INTERRUPTED,
    }
)
USERNAME = "meshplane-conformance"
CREATE_NAMESPACE = "create-namespace"
"""The parameter letting an operation create a namespace that does not exist (when offered)."""
PURGE_CRDS = "purge-crds"
"""The parameter making a delete remove the release's CRDs too (when offered)."""
_POLL_SECONDS = 0.05


def state_name(state: int) -> str:
    """``SUCCEEDED`` for ``OPERATION_STATE_SUCCEEDED``."""
    return str(pb.OperationState.Name(state)).removeprefix("OPERATION_STATE_")  # type: ignore[arg-type]


@dataclass(kw_only=True)
class OperationRun:
    """One operation the suite started, and what became of it."""

    operation_id: str
    operation: str
    delete: bool
    bound: float
    apply_seconds: float
    final: pb.Operation | None = None
    waited_seconds: float = 0.0
    timed_out: bool = False

    @property
    def label(self) -> str:
        """``bookinfo`` or ``bookinfo (delete)``."""
        return f"{self.operation} (delete)" if self.delete else self.operation


class OperationCalls:
    """The adapter stub, and every operation started through it (`runs`)."""

    def __init__(self, stub: Any, config: SuiteConfig) -> None:
        self.stub = stub
        self.config = config
        self.run_id = config.run_id or uuid.uuid4().hex[:8]
        self.runs: list[OperationRun] = []
        self._ids = 0
        self._kubeconfig_text = ""
        self._undo: dict[str, pb.ApplyOperationRequest] = {}
        """Operations applied and not yet deleted (by operation), undone by `close`."""

    # -- requests ---------------------------------------------------------------------------

    def new_id(self, label: str) -> str:
        """A fresh operation_id naming the suite run and what it is for."""
        self._ids += 1
        return f"conformance-{self.run_id}-{self._ids}-{label}"[:128]

    def request(
        self,
        op: pb.OperationDescriptor,
        *,
        operation_id: str,
        delete: bool = False,
        custom_body: str = "",
        namespace: str = "",
    ) -> pb.ApplyOperationRequest:
        """A request for ``op`` with its defaults (required parameters: first allowed value).

        Where the operation offers them, it may create the namespace it applies to (the suite
        runs each operation where it lands by default, which may not exist yet), and a delete
        removes CRDs too (so the delete leaves nothing of the operation behind).
        """
        parameters = {
            p.name: p.allowed_values[0]
            for p in op.parameters
            if p.required and not p.default_value and p.allowed_values
        }
        offered = {p.name for p in op.parameters}
        if CREATE_NAMESPACE in offered and not delete:
            parameters[CREATE_NAMESPACE] = "true"
        if PURGE_CRDS in offered and delete:
            parameters[PURGE_CRDS] = "true"
        request = pb.ApplyOperationRequest(
            operation_id=operation_id,
            operation=op.id,
            namespace=namespace,
            delete=delete,
            custom_body=custom_body,
            parameters=parameters,
            username=USERNAME,
        )
        request.timeout.FromNanoseconds(int(self.config.operation_timeout * 1e9))
        if op.category == pb.OPERATION_CATEGORY_INSTALL and self.config.mesh_version:
            request.mesh_version = self.config.mesh_version
        if self.config.send_kubeconfig:
            request.clusters.append(
                pb.Cluster(
                    name="conformance",
                    kubeconfig=self._kubeconfig(),
                    context=self.config.kube_context,
                )
            )
        return request

    def _kubeconfig(self) -> str:
        if not self._kubeconfig_text:
            self._kubeconfig_text = self.config.kubeconfig.read_text(encoding="utf-8")
        return self._kubeconfig_text

    async def apply(
        self, request: pb.ApplyOperationRequest, *, undo: bool = True
    ) -> tuple[pb.ApplyOperationResponse, float]:
        """ApplyOperation, timed; a newly created operation is remembered for later checks.

        ``undo``: the operation changes the cluster and `close` deletes it unless a check does.
        """
        started = time.monotonic()
        try:
            response: pb.ApplyOperationResponse = await self.stub.ApplyOperation(
                request, timeout=self.config.rpc_timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise CheckFailed(
                f"ApplyOperation {request.operation}{' (delete)' if request.delete else ''} "
                f"was refused: {exc.code().name}: {exc.details()}"
            ) from exc
        seconds = time.monotonic() - started
        if response.created or not any(r.operation_id == response.operation_id for r in self.runs):
            self.runs.append(
                OperationRun(
                    operation_id=response.operation_id or request.operation_id,
                    operation=request.operation,
                    delete=request.delete,
                    bound=self.config.poll_bound,
                    apply_seconds=seconds,
                )
            )
        if request.delete:
            self._undo.pop(request.operation, None)
        elif undo:
            self._undo[request.operation] = request
        return response, seconds

    def run_of(self, operation_id: str) -> OperationRun:
        """The remembered run of an operation the suite started."""
        for run in self.runs:
            if run.operation_id == operation_id:
                return run
        raise KeyError(operation_id)

    async def wait(self, operation_id: str) -> pb.Operation:
        """Poll GetOperation until the operation is terminal; fails the check after its bound."""
        run = self.run_of(operation_id)
        if run.final is not None:
            return run.final
        if run.timed_out:
            raise CheckFailed(f"{run.label} ({operation_id}) did not finish within {run.bound:g}s")
        started = time.monotonic()
        deadline = started + run.bound
        state = pb.OPERATION_STATE_UNSPECIFIED
        while True:
            try:
                reply = await self.stub.GetOperation(
                    pb.GetOperationRequest(operation_id=operation_id),
                    timeout=self.config.rpc_timeout,
                )
            except grpc.aio.AioRpcError as exc:
                raise CheckFailed(
                    f"GetOperation {operation_id}: {exc.code().name}: {exc.details()}"
                ) from exc
            state = reply.operation.state
            if state in TERMINAL_STATES:
                run.final = reply.operation
                run.waited_seconds = time.monotonic() - started
                return run.final
            if time.monotonic() > deadline:
                run.timed_out = True
                run.waited_seconds = time.monotonic() - started
                raise CheckFailed(
                    f"{run.label} ({operation_id}) is still {state_name(state)} after "
                    f"{run.bound:g}s"
                )
            await asyncio.sleep(_POLL_SECONDS)

    async def run_to_end(
        self, request: pb.ApplyOperationRequest, *, undo: bool = True
    ) -> pb.Operation:
        """Apply and wait; fails the check unless the operation SUCCEEDED."""
        response, _ = await self.apply(request, undo=undo)
        done = await self.wait(response.operation_id)
        if done.state != pb.OPERATION_STATE_SUCCEEDED:
            verb = "delete" if request.delete else "run"
            raise CheckFailed(
                f"{request.operation} ({verb}) ended {state_name(done.state)}: "
                f"{done.error.code} {done.error.message}".rstrip()
            )
        return done
