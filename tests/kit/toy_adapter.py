"""A toy mesh for exercising the adapter kit through real gRPC: declaration, executor, harness.

`ScriptedExecutor` is a real `ClusterExecutor`: per cluster it emits events, sleeps, blocks on a
gate, fails or raises as the test scripts it, and counts every execution, so tests observe the
runner from outside (no patching of internals).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.declare.operations import Category, OperationSpec
from adapters.kit.declare.parameters import Parameter
from adapters.kit.model.records import (
    ClusterResult,
    ClusterTarget,
    ErrorDetail,
    OperationRecord,
    OperationState,
    Severity,
)
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig
from adapters.kit.process.server import RunningAdapter, start_adapter
from adapters.kit.process.settings import AdapterSettings
from adapters.kit.run.metrics import AdapterMetrics
from adapters.kit.run.seam import (
    ComponentState,
    MeshStatus,
    MeshVersionInfo,
    OperationEmitter,
)
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc


def _replicas_check(value: str) -> str | None:
    if not value.isdigit() or not 1 <= int(value) <= 10:
        return f"{value!r} is not a whole number from 1 to 10"
    return None


DECLARATION = MeshDeclaration(
    mesh="toy",
    default_port=10999,
    chart_repository="https://charts.toy.example/",
    manifests_url="https://manifests.toy.example/{version}/",
    default_namespace="toy-system",
    operations=(
        OperationSpec(
            id="install",
            category=Category.INSTALL,
            description="Install the toy control plane",
            default_namespace="toy-system",
            uses_mesh_version=True,
            parameters=(
                Parameter(
                    name="profile",
                    description="installation profile",
                    default="default",
                    allowed=("minimal", "default", "demo"),
                ),
            ),
        ),
        OperationSpec(
            id="sample",
            category=Category.SAMPLE_APPLICATION,
            description="Deploy the toy sample app",
            default_namespace="default",
            parameters=(
                Parameter(
                    name="replicas",
                    description="pods per service",
                    default="1",
                    check=_replicas_check,
                ),
            ),
        ),
        OperationSpec(
            id="policy",
            category=Category.CONFIGURE,
            description="Set the mesh-wide mTLS mode",
            default_namespace="toy-system",
            supports_delete=False,
            parameters=(
                Parameter(
                    name="mode",
                    description="STRICT or PERMISSIVE",
                    required=True,
                    allowed=("STRICT", "PERMISSIVE"),
                ),
            ),
        ),
        OperationSpec(
            id="custom",
            category=Category.CUSTOM,
            description="Apply user YAML",
            default_namespace="default",
            custom=True,
        ),
    ),
)


@dataclass(kw_only=True)
class Script:
    """What the executor does on one cluster."""

    events: int = 1
    event_details: str = ""
    delay: float = 0.0
    event_interval: float = 0.0
    fail: bool = False
    raise_error: bool = False
    gate: asyncio.Event | None = None
    """When set, the execution blocks until the gate opens (or it is cancelled)."""
    gate_attempts: int = 1_000
    """The gate holds only attempts up to this number (a resumed run can then finish)."""
    unwind_seconds: float = 0.0
    """Time a cancelled execution takes to stop (cleaning up before it re-raises)."""


@dataclass(kw_only=True)
class Execution:
    """One call of `execute`, as observed."""

    operation_id: str
    operation: str
    cluster: str
    attempt: int
    kubeconfig: JudgedKubeconfig | None
    finished: bool = False
    cancelled: bool = False


@dataclass(kw_only=True)
class ScriptedExecutor:
    """A `ClusterExecutor` that follows per-cluster scripts and records what it did."""

    scripts: dict[str, Script] = field(default_factory=dict)
    executions: list[Execution] = field(default_factory=list)
    status_error: str = ""
    prepared: list[str] = field(default_factory=list)
    """Clusters `prepare` was called for."""

    def script(self, cluster: str) -> Script:
        return self.scripts.get(cluster) or self.scripts.get("*") or Script()

    def count(self, operation_id: str) -> int:
        return sum(1 for e in self.executions if e.operation_id == operation_id)

    async def wait_started(self, operation_id: str, clusters: int = 1) -> None:
        await eventually(lambda: self.count(operation_id) >= clusters)

    async def execute(
        self,
        spec: OperationSpec,
        record: OperationRecord,
        target: ClusterTarget,
        emit: OperationEmitter,
    ) -> ClusterResult:
        seen = Execution(
            operation_id=record.operation_id,
            operation=spec.id,
            cluster=target.name,
            attempt=record.attempt,
            kubeconfig=target.kubeconfig,
        )
        self.executions.append(seen)
        script = self.script(target.name)
        try:
            for index in range(script.events):
                emit(
                    Severity.INFO,
                    f"step {index + 1} on {target.name}",
                    component=f"Deployment {record.namespace}/toy-{index}",
                    details=script.event_details,
                )
                if script.event_interval:
                    await asyncio.sleep(script.event_interval)
            if script.delay:
                await asyncio.sleep(script.delay)
            if script.gate is not None and record.attempt <= script.gate_attempts:
                await script.gate.wait()
            if script.raise_error:
                raise RuntimeError(f"scripted crash on {target.name}")
            seen.finished = True
            if script.fail:
                return ClusterResult(
                    cluster=target.name,
                    state=OperationState.FAILED,
                    error=ErrorDetail(
                        code="WORKLOAD_NOT_READY",
                        message=f"Deployment toy-0 not ready on {target.name}",
                        probable_cause="image pull back-off",
                        suggested_remediation="check the image registry",
                    ),
                    summary="toy-0 not ready",
                )
            return ClusterResult(
                cluster=target.name,
                state=OperationState.SUCCEEDED,
                objects_applied=3,
                objects_unchanged=1,
                summary="3 applied",
            )
        except asyncio.CancelledError:
            seen.cancelled = True
            if script.unwind_seconds:
                await asyncio.sleep(script.unwind_seconds)
            raise

    async def prepare(self, target: ClusterTarget) -> None:
        self.prepared.append(target.name)

    async def status(self, target: ClusterTarget, namespace: str) -> MeshStatus:
        if self.status_error:
            raise ConnectionError(self.status_error)
        return MeshStatus(
            cluster=target.name,
            installed=True,
            version="1.30.3",
            namespace=namespace,
            components=(
                ComponentState(kind="Deployment", name="toyd", namespace=namespace, ready=True),
            ),
            injection_namespaces=("default",),
        )


@dataclass(kw_only=True)
class ToyVersions:
    """A `VersionCatalog` with a fixed index (or an unreachable repository)."""

    entries: tuple[str, ...] = ("1.30.3", "1.29.6", "1.31.0-rc.1")
    unreachable: bool = False

    async def versions(self) -> list[MeshVersionInfo]:
        if self.unreachable:
            raise ConnectionError("GET https://charts.toy.example/index.yaml: connection refused")
        return [
            MeshVersionInfo(
                version=v,
                app_version=v,
                prerelease="-" in v,
                created=datetime(2026, 1, 1, tzinfo=UTC),
            )
            for v in self.entries
        ]

    async def default_version(self) -> str:
        return next(v.version for v in await self.versions() if not v.prerelease)


@dataclass(kw_only=True)
class Harness:
    """A running toy adapter and a client stub connected to it."""

    adapter: RunningAdapter
    executor: ScriptedExecutor
    versions: ToyVersions
    channel: Any
    stub: pb_grpc.MeshAdapterServiceStub

    async def wait_state(self, operation_id: str, *states: int, within: float = 10) -> pb.Operation:
        """Poll GetOperation until the operation is in one of ``states``."""
        async with asyncio.timeout(within):
            while True:
                response = await self.stub.GetOperation(
                    pb.GetOperationRequest(operation_id=operation_id)
                )
                operation: pb.Operation = response.operation
                if operation.state in states:
                    return operation
                await asyncio.sleep(0.01)


TERMINAL = (
    pb.OPERATION_STATE_SUCCEEDED,
    pb.OPERATION_STATE_FAILED,
    pb.OPERATION_STATE_CANCELLED,
    pb.OPERATION_STATE_INTERRUPTED,
)


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until ``check()`` holds (polling: the tested code has no hook to wait on)."""
    for _ in range(int(within / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"condition not met within {within}s")


def settings(**changes: Any) -> AdapterSettings:
    """Loopback, port 0, short grace: what tests run with."""
    base = AdapterSettings(host="127.0.0.1", port=0, shutdown_grace_seconds=2.0)
    return replace(base, **changes)


@contextlib.asynccontextmanager
async def toy_adapter(
    *,
    executor: ScriptedExecutor | None = None,
    versions: ToyVersions | None = None,
    stop: bool = True,
    **changes: Any,
) -> AsyncIterator[Harness]:
    """Start the toy adapter on 127.0.0.1:0 and connect a stub; stop both afterwards."""
    executor = executor or ScriptedExecutor()
    versions = versions or ToyVersions()

    def factory(
        declaration: MeshDeclaration, config: AdapterSettings, metrics: AdapterMetrics
    ) -> tuple[ScriptedExecutor, ToyVersions]:
        return executor, versions

    adapter = await start_adapter(DECLARATION, settings(**changes), factory)
    channel = grpc.aio.insecure_channel(adapter.address)
    try:
        yield Harness(
            adapter=adapter,
            executor=executor,
            versions=versions,
            channel=channel,
            stub=pb_grpc.MeshAdapterServiceStub(channel),
        )
    finally:
        await channel.close()
        if stop:
            await adapter.stop()


def executor_factory(
    declaration: MeshDeclaration, config: AdapterSettings, metrics: AdapterMetrics
) -> tuple[ScriptedExecutor, ToyVersions]:
    """For `meshplane adapter --executor-factory`: first attempts block until cancelled."""
    return ScriptedExecutor(scripts={"*": Script(gate=asyncio.Event(), gate_attempts=1)}), (
        ToyVersions()
    )


def status_code(error: BaseException) -> Any:
    """The gRPC status code of an AioRpcError."""
    assert isinstance(error, grpc.aio.AioRpcError), error
    return error.code()
