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
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import structlog

from adapters.conformance.cluster_view import ClusterView, ClusterViewError, ManagedObject
from adapters.conformance.verdicts import CheckFailed, CheckSkipped
from meshplane.adapter.v1 import adapter_pb2 as pb
from serving import BackgroundTasks

__all__ = ["TERMINAL_STATES", "OperationRun", "SuiteConfig", "SuiteContext", "state_name"]

_log = structlog.get_logger(__name__)

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


@dataclass(frozen=True, kw_only=True)
class SuiteConfig:
    """How to run the suite against one adapter."""

    kubeconfig: Path
    """Kubeconfig of the cluster the adapter manages; the suite reads that cluster with it."""
    kube_context: str = ""
    only: frozenset[str] = frozenset()
    """Check names to run (empty: all)."""
    operation_timeout: float = 300.0
    """Deadline sent with each request (ApplyOperationRequest.timeout); the operation must be
    terminal by then, plus a grace for the adapter to record it (`poll_bound`)."""
    prompt_seconds: float = 2.0
    """ApplyOperation must answer within this."""
    rpc_timeout: float = 15.0
    idle_seconds: float = 0.5
    """A replay is complete when no further event arrives within this."""
    mesh_version: str = ""
    """Mesh version to install (empty: the adapter's default)."""
    send_kubeconfig: bool = False
    """True: name the cluster in each request (Cluster.kubeconfig); False: the adapter's own."""
    run_id: str = ""
    """Prefix of every operation_id and object name the suite creates (empty: random)."""

    @property
    def poll_bound(self) -> float:
        """How long GetOperation is polled for a terminal state."""
        return self.operation_timeout + min(30.0, self.operation_timeout / 2)


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


class SuiteContext:
    """Shared state of one suite run; `close` undoes what is left installed."""

    def __init__(self, stub: Any, config: SuiteConfig, view: ClusterView) -> None:
        self.stub = stub
        self.config = config
        self.view = view
        self.run_id = config.run_id or uuid.uuid4().hex[:8]
        self.runs: list[OperationRun] = []
        self.follower = _Follower()
        self._ids = 0
        self._info: pb.GetInfoResponse | None = None
        self._catalogue: list[pb.OperationDescriptor] | None = None
        self._install: _Install | None = None
        self._install_lock = asyncio.Lock()
        self._tasks = BackgroundTasks(owner="conformance")
        self._kubeconfig_text = ""
        self._undo: dict[str, pb.ApplyOperationRequest] = {}
        """Operations applied and not yet deleted (by operation), undone by `close`."""

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
