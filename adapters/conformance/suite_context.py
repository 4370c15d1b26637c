"""What the checks share: the adapter stub, the cluster view, and the one mesh install.

Checks are independent functions, but several of them observe the same thing: the mesh
`install` operation is what `apply-returns-promptly` times, what `idempotent-operation-id`
re-sends, what fills the event log for `event-sequence` and what every sample needs first. The
context starts it lazily (once, whichever check asks first), remembers every operation the suite
started (`operation-terminal` judges them all), and undoes whatever is still installed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import structlog

from adapters.conformance.cluster_view import ClusterView, ClusterViewError, ManagedObject
from adapters.conformance.operation_calls import (
    CREATE_NAMESPACE,
    PURGE_CRDS,
    OperationCalls,
    OperationRun,
    state_name,
)
from adapters.conformance.suite_config import SuiteConfig
from adapters.conformance.verdicts import CheckFailed, CheckSkipped
from meshplane.adapter.v1 import adapter_pb2 as pb
from serving import BackgroundTasks

__all__ = ["SuiteContext"]

_log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class _Install:
    request: pb.ApplyOperationRequest
    response: pb.ApplyOperationResponse
    run: OperationRun
    baseline: dict[ManagedObject, dict[str, str]]
    deleted: bool = False


@dataclass(kw_only=True)
class _Follower:
    events: list[pb.Event] = field(default_factory=list)
    error: str = ""


class SuiteContext(OperationCalls):
    """Shared state of one suite run; `close` undoes what is left installed."""

    def __init__(self, stub: Any, config: SuiteConfig, view: ClusterView) -> None:
        super().__init__(stub, config)
        self.view = view
        self.follower = _Follower()
        self._info: pb.GetInfoResponse | None = None
        self._catalogue: list[pb.OperationDescriptor] | None = None
        self._install: _Install | None = None
        self._install_lock = asyncio.Lock()
        self._tasks = BackgroundTasks(owner="conformance")

    # -- adapter facts --------------------------------------------------------------------------

    async def info(self) -> pb.GetInfoResponse:
        """GetInfo (asked once)."""
        if self._info is None:
            self._info = await self.stub.GetInfo(
                pb.GetInfoRequest(), timeout=self.config.rpc_timeout
            )
        return self._info

    async def catalogue(self) -> list[pb.OperationDescriptor]:
        """ListOperations (asked once)."""
        if self._catalogue is None:
            reply = await self.stub.ListOperations(
                pb.ListOperationsRequest(), timeout=self.config.rpc_timeout
            )
            self._catalogue = list(reply.operations)
        return self._catalogue

    async def install_descriptor(self) -> pb.OperationDescriptor:
        """The mesh install operation: id ``install``, else the first deletable INSTALL entry."""
        entries = [
            op
            for op in await self.catalogue()
            if op.category == pb.OPERATION_CATEGORY_INSTALL and op.supports_delete
        ]
        for op in entries:
            if op.id == "install":
                return op
        if not entries:
            raise CheckSkipped("the catalogue has no INSTALL operation that supports delete")
        return entries[0]

    # -- events -----------------------------------------------------------------------------

    async def replay(self, *, after_sequence: int = 0, operation_id: str = "") -> list[pb.Event]:
        """The retained events after ``after_sequence``: read until none arrives for a while."""
        call = self.stub.StreamEvents(
            pb.StreamEventsRequest(after_sequence=after_sequence, operation_id=operation_id)
        )
        events: list[pb.Event] = []
        try:
            while True:
                try:
                    reply = await asyncio.wait_for(call.read(), self.config.idle_seconds)
                except TimeoutError:
                    return events
                if reply is grpc.aio.EOF:
                    code = await call.code()
                    if code != grpc.StatusCode.OK:
                        raise CheckFailed(
                            f"StreamEvents(after_sequence={after_sequence}) ended with "
                            f"{code.name}: {await call.details()}"
                        )
                    return events
                events.append(reply.event)
        except grpc.aio.AioRpcError as exc:
            raise CheckFailed(
                f"StreamEvents(after_sequence={after_sequence}) failed: "
                f"{exc.code().name}: {exc.details()}"
            ) from exc
        finally:
            call.cancel()

    def _follow(self) -> None:
        """Follow StreamEvents live from now on (the live half of `event-sequence`)."""
        if "live-events" in self._tasks.names:
            return

        async def follow() -> None:
            call = self.stub.StreamEvents(pb.StreamEventsRequest(after_sequence=0))
            try:
                async for reply in call:
                    self.follower.events.append(reply.event)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    self.follower.error = f"{exc.code().name}: {exc.details()}"
            finally:
                call.cancel()

        self._tasks.start("live-events", follow())

    # -- the cluster ----------------------------------------------------------------------------

    async def snapshot(self) -> dict[ManagedObject, dict[str, str]]:
        """Every meshplane-labelled object in the cluster now."""
        try:
            return await self.view.labelled()
        except ClusterViewError as exc:
            raise CheckFailed(f"cannot read the cluster: {exc}") from exc

    # -- the mesh install -------------------------------------------------------------------

    async def start_install(
        self,
    ) -> tuple[pb.ApplyOperationRequest, pb.ApplyOperationResponse, float]:
        """Apply the mesh install once (first caller); returns request, response, latency."""
        async with self._install_lock:
            if self._install is None:
                descriptor = await self.install_descriptor()
                baseline = await self.snapshot()
                self._follow()
                request = self.request(descriptor, operation_id=self.new_id(descriptor.id))
                response, _ = await self.apply(request)
                self._install = _Install(
                    request=request,
                    response=response,
                    run=self.run_of(response.operation_id),
                    baseline=baseline,
                )
            install = self._install
        return install.request, install.response, install.run.apply_seconds

    async def installed(self) -> pb.Operation:
        """The mesh install, finished; fails the check unless it SUCCEEDED."""
        _, response, _ = await self.start_install()
        done = await self.wait(response.operation_id)
        if done.state != pb.OPERATION_STATE_SUCCEEDED:
            raise CheckFailed(
                f"the mesh install ended {state_name(done.state)}: "
                f"{done.error.code} {done.error.message}".rstrip()
            )
        return done

    def baseline(self) -> dict[ManagedObject, dict[str, str]]:
        """Labelled objects before the suite installed anything."""
        assert self._install is not None, "start_install first"
        return self._install.baseline

    async def uninstall(self) -> pb.Operation:
        """Delete the mesh install (once it has finished); fails unless the delete SUCCEEDED."""
        request, response, _ = await self.start_install()
        with contextlib.suppress(CheckFailed):
            await self.wait(response.operation_id)
        descriptor = await self.install_descriptor()
        undo = self.request(
            descriptor,
            operation_id=self.new_id(f"{descriptor.id}-delete"),
            delete=True,
            namespace=request.namespace,
        )
        undo.mesh_version = request.mesh_version
        assert self._install is not None
        self._install.deleted = True
        return await self.run_to_end(undo)

    # -- the end ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Undo anything still applied (newest first, the mesh last) and stop following events."""
        for operation, request in reversed(list(self._undo.items())):
            if self._install is not None and operation == self._install.request.operation:
                continue
            await self._undo_one(request)
        if self._install is not None and not self._install.deleted:
            with contextlib.suppress(CheckFailed):
                await self.wait(self._install.response.operation_id)
            await self._undo_one(self._install.request)
        await self._tasks.stop(grace_seconds=2.0)

    async def _undo_one(self, request: pb.ApplyOperationRequest) -> None:
        undo = pb.ApplyOperationRequest()
        undo.CopyFrom(request)
        undo.operation_id = self.new_id(f"{request.operation}-cleanup")
        undo.delete = True
        undo.parameters.pop(CREATE_NAMESPACE, None)
        offered = {
            p.name
            for op in await self.catalogue()
            if op.id == request.operation
            for p in op.parameters
        }
        if PURGE_CRDS in offered:
            undo.parameters[PURGE_CRDS] = "true"
        try:
            await self.run_to_end(undo)
        except CheckFailed as exc:
            _log.warning("conformance.cleanup_failed", operation=request.operation, error=str(exc))
        else:
            _log.info("conformance.cleaned_up", operation=request.operation)
