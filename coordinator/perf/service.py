"""The coordinator's four performance RPCs: run a test, list, get and compare stored results.

The servicer delegates here so the perf work stays out of routing: what the mesh under test is
comes from a provider the coordinator passes in (its adapters via the router), and what the
cluster is comes from another (a kubeconfig). Results are stored before the caller sees them, as
the protobuf JSON mapping of ``meshplane.perf.v1.PerformanceResult`` (lossless, SMP field
names), so they survive a coordinator restart and read back exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import grpc
import grpc.aio
import structlog
from google.protobuf import json_format, timestamp_pb2
from kubernetes.aio import client as _kube_client
from kubernetes.aio import config as _kube_config

from coordinator.perf import (
    ClientConfig,
    EnvironmentInfo,
    LoadGenerator,
    MeshInfo,
    PerformanceResult,
    Progress,
    Protocol,
    TestConfig,
    WrkUnavailableError,
    compare,
    comparison_to_proto,
    config_from_proto,
    new_id,
    progress_to_proto,
    result_from_proto,
    result_matches,
    result_to_proto,
    run_test,
)
from coordinator.perf.limits import PerfLimits, limit_problems
from coordinator.store.base import Store
from coordinator.store.paging import (
    MAX_PAGE_SIZE,
    PageKey,
    decode_page_token,
    encode_page_token,
)
from coordinator.store.records import PerfResultRecord
from meshplane.adapter.v1 import adapter_pb2 as adapter_pb
from meshplane.adapter.v1 import adapter_pb2_grpc as adapter_grpc
from meshplane.perf.v1 import perf_pb2 as pb
from serving.input_quoting import quoted

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "DOCUMENT_FORMAT",
    "AdapterCall",
    "EnvironmentProvider",
    "MeshInfoProvider",
    "MeshLookupError",
    "PerformanceRpcs",
    "adapter_mesh_info",
    "kubeconfig_environment",
    "no_environment",
    "no_mesh_info",
    "record_from_result",
    "result_from_record",
    "save_result",
]

_log = structlog.get_logger(__name__)

# The client's modules carry no usable annotations.
kube_client: Any = _kube_client
kube_config: Any = _kube_config

DEFAULT_PAGE_SIZE = 50
DOCUMENT_FORMAT = "meshplane.perf.v1.PerformanceResult"
NO_MESH = "none"
ENVIRONMENT_TIMEOUT_S = 5.0

MeshInfoProvider = Callable[[str], Awaitable[MeshInfo]]
"""``provider(mesh)`` → the mesh's type and version as its adapter reports them now."""

EnvironmentProvider = Callable[[], Awaitable[EnvironmentInfo]]
"""``provider()`` → the cluster's Kubernetes version and node count (empty when unknown)."""

ChannelCall = Callable[[Any, float], Awaitable[Any]]
"""``call(channel, timeout_seconds)``: one RPC to one adapter replica."""

AdapterCall = Callable[[str, ChannelCall], Awaitable[tuple[Any, str]]]
"""``call_adapter(mesh, call)`` runs ``call`` on a healthy replica; returns (answer, address).

It raises `MeshLookupError` when no replica can take the call (unknown mesh, none healthy).
"""


class MeshLookupError(Exception):
    """The mesh's adapter could not say what it runs; ``code`` is the gRPC status to answer."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def no_mesh_info(mesh: str) -> MeshInfo:
    """Without adapters to ask, the mesh cannot be known: record the no-mesh baseline."""
    return MeshInfo(type=NO_MESH)


async def no_environment() -> EnvironmentInfo:
    """Without a cluster to ask, the environment is empty."""
    return EnvironmentInfo()


def adapter_mesh_info(call_adapter: AdapterCall) -> MeshInfoProvider:
    """A provider asking the mesh's adapter: GetInfo for the type, GetMeshStatus for the version.

    The version is the *installed* mesh version; when the adapter cannot inspect its cluster the
    version stays empty (logged) rather than failing the test.
    """

    async def get_info(channel: Any, seconds: float) -> Any:
        stub = adapter_grpc.MeshAdapterServiceStub(channel)
        return await stub.GetInfo(adapter_pb.GetInfoRequest(), timeout=seconds)

    async def get_status(channel: Any, seconds: float) -> Any:
        stub = adapter_grpc.MeshAdapterServiceStub(channel)
        return await stub.GetMeshStatus(adapter_pb.GetMeshStatusRequest(), timeout=seconds)

    async def provide(mesh: str) -> MeshInfo:
        try:
            info, address = await call_adapter(mesh, get_info)
        except grpc.aio.AioRpcError as exc:
            raise MeshLookupError(
                exc.code(), f"{mesh} adapter GetInfo: {exc.details() or exc.code().name}"
            ) from exc
        version = ""
        try:
            status, _ = await call_adapter(mesh, get_status)
            version = status.version if status.installed else ""
        except (grpc.aio.AioRpcError, MeshLookupError) as exc:
            _log.warning("perf.mesh_version_unknown", mesh=mesh, adapter=address, error=str(exc))
        return MeshInfo(type=info.mesh or mesh, version=version, adapter=address)

    return provide


def kubeconfig_environment(kubeconfig: Path | None) -> EnvironmentProvider:
    """A provider reading ``/version`` and the node list with ``kubeconfig``.

    Without a kubeconfig it uses the pod's ServiceAccount when running in a cluster, and is
    empty otherwise. A cluster that does not answer (within 5 s) gives an empty environment:
    the test still runs, its ``env_id`` then says "unknown".
    """

    async def read_json(response: Any, what: str) -> dict[str, Any]:
        # raw JSON: typed models refuse nodes whose nodeInfo lacks fields they require
        try:
            text = await response.read()
            if response.status >= 400:
                raise RuntimeError(f"{what}: HTTP {response.status}: {text[:300]!r}")
            body: dict[str, Any] = json.loads(text)
            return body
        finally:
            response.release()

    async def read(api: Any) -> EnvironmentInfo:
        version = await read_json(
            await kube_client.VersionApi(api).get_code_without_preload_content(), "/version"
        )
        nodes = await read_json(
            await kube_client.CoreV1Api(api).list_node_without_preload_content(), "list nodes"
        )
        return EnvironmentInfo(
            kubernetes_version=str(version.get("gitVersion") or ""),
            node_count=len(nodes.get("items") or []),
        )

    async def provide() -> EnvironmentInfo:
        in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        if kubeconfig is None and not in_pod:
            return EnvironmentInfo()
        api: Any = None
        try:
            async with asyncio.timeout(ENVIRONMENT_TIMEOUT_S):
                if kubeconfig is None:
                    configuration = kube_client.Configuration()
                    kube_config.load_incluster_config(client_configuration=configuration)
                    api = kube_client.ApiClient(configuration)
                else:
                    api = await kube_config.new_client_from_config(
                        config_file=str(kubeconfig), persist_config=False
                    )
                return await read(api)
        except Exception as exc:  # any failure only means "environment unknown"
            _log.warning("perf.environment_unknown", kubeconfig=str(kubeconfig), error=str(exc))
            return EnvironmentInfo()
        finally:
            if api is not None:
                await api.close()

    return provide


# -- storage ----------------------------------------------------------------------------------


def record_from_result(result: PerformanceResult) -> PerfResultRecord:
    """The store row of a result: listed by test, mesh type and start time."""
    message = result_to_proto(result)
    return PerfResultRecord(
        result_id=result.id,
        test_id=result.test_id,
        name=result.config.name if result.config is not None else "",
        mesh=(result.mesh.type if result.mesh is not None else NO_MESH).strip().lower(),
        created_at=result.start_time,
        labels=dict(result.labels),
        document={
            "format": DOCUMENT_FORMAT,
            "result": json_format.MessageToDict(message, preserving_proto_field_name=True),
        },
    )


def result_from_record(record: PerfResultRecord) -> PerformanceResult:
    """Read a stored result back; ValueError when the document is not one we wrote."""
    document = record.document
    if document.get("format") != DOCUMENT_FORMAT or not isinstance(document.get("result"), dict):
        raise ValueError(f"stored result {record.result_id} is not a {DOCUMENT_FORMAT} document")
    message = pb.PerformanceResult()
    try:
        json_format.ParseDict(document["result"], message)
    except json_format.ParseError as exc:
        raise ValueError(f"stored result {record.result_id} does not parse: {exc}") from exc
    return result_from_proto(message)


async def save_result(store: Store, result: PerformanceResult) -> None:
    """Store (or replace) one result."""
    await store.save_perf_result(record_from_result(result))


# -- the RPCs ---------------------------------------------------------------------------------


async def _abort(context: Any, code: Any, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


_CLIENT = "config.clients[0]"


def _load_problems(config: TestConfig, client: ClientConfig) -> list[str]:
    """Problems with how much load: URLs, connections, rate, count, duration, timeout."""
    problems = []
    if not client.endpoint_urls or not all(url.strip() for url in client.endpoint_urls):
        problems.append(f"{_CLIENT}.endpoint_urls: at least one non-empty endpoint URL is required")
    if client.connections < 1:
        problems.append(f"{_CLIENT}.connections: must be at least 1, got {client.connections}")
    if client.rps < 0:
        problems.append(f"{_CLIENT}.rps: must be > 0 for a constant rate, or 0 for max-throughput")
    if config.request_count < 0:
        problems.append(f"config.request_count: must be >= 0, got {config.request_count}")
    if config.request_count == 0 and config.duration_s <= 0:
        problems.append("config.duration: give a positive duration (or config.request_count)")
    if client.request_timeout_s <= 0:
        problems.append(f"{_CLIENT}.request_timeout: must be positive")
    return problems


def _builtin_problems(client: ClientConfig) -> list[str]:
    """What the built-in generator cannot run: protocols other than HTTP and gRPC."""
    if client.protocol not in (Protocol.HTTP, Protocol.GRPC):
        return [
            f"{_CLIENT}.protocol: the built-in generator speaks HTTP and GRPC, "
            f"not {client.protocol.value}"
        ]
    if client.protocol is Protocol.GRPC and not client.grpc_method:
        return [f"{_CLIENT}.grpc_method: required for GRPC ('package.Service/Method')"]
    return []


def _wrk_problems(config: TestConfig, client: ClientConfig) -> list[str]:
    """What wrk cannot run: other protocols, a constant rate, a request count."""
    problems = []
    if client.protocol is not Protocol.HTTP:
        problems.append(f"{_CLIENT}.protocol: wrk speaks HTTP only")
    if client.rps > 0:
        problems.append(
            f"{_CLIENT}.rps: wrk has no constant-rate mode (that is wrk2); use 0 "
            "(max-throughput) or the built-in generator"
        )
    if config.request_count > 0:
        problems.append("config.request_count: wrk stops by duration only")
    return problems


def _config_problems(config: TestConfig) -> list[str]:
    """What is wrong with a config, each naming the request field."""
    if not config.clients:
        return ["config.clients: at least one client is required"]
    client = config.clients[0]
    problems = _load_problems(config, client)
    if client.load_generator is LoadGenerator.FORTIO:
        problems.append(
            f"{_CLIENT}.load_generator: fortio results are imported (meshplane perf import), "
            "not run by the coordinator; use builtin or wrk"
        )
    if client.load_generator is LoadGenerator.BUILTIN:
        problems += _builtin_problems(client)
    if client.load_generator is LoadGenerator.WRK:
        problems += _wrk_problems(config, client)
    return problems


def _time(stamp: timestamp_pb2.Timestamp, present: bool) -> datetime | None:
    return stamp.ToDatetime(tzinfo=UTC) if present else None


_SHUTTING_DOWN = "the coordinator is shutting down; run the test again once it is back"


class PerformanceRpcs:
    """RunPerformanceTest, ListPerformanceResults, GetPerformanceResult and
    ComparePerformanceResults over one store."""

    def __init__(
        self,
        store: Store,
        *,
        mesh_info_provider: MeshInfoProvider = no_mesh_info,
        environment_provider: EnvironmentProvider = no_environment,
        limits: PerfLimits | None = None,
    ) -> None:
        self._store = store
        self._mesh_info = mesh_info_provider
        self._environment = environment_provider
        self._limits = limits or PerfLimits()
        self._running: dict[str, asyncio.Task[PerformanceResult] | None] = {}
        self._stopping = False

    @property
    def running_tests(self) -> int:
        """Tests generating load right now."""
        return sum(1 for run in self._running.values() if run is not None and not run.done())

    def stop_all(self) -> None:
        """Refuse new tests and stop the running ones now (the server is shutting down).

        Called before the server drains: a test streams for as long as it runs, so waiting for
        it would hold SIGTERM for the whole grace period. Each stopped caller gets UNAVAILABLE.
        """
        self._stopping = True
        for run in self._running.values():
            if run is not None and not run.done():
                run.cancel()

    async def _test_config(self, request: pb.RunPerformanceTestRequest, context: Any) -> TestConfig:
        unspecified = [
            f"config.clients[{index}].protocol: unspecified; choose HTTP, GRPC, TCP or UDP"
            for index, client in enumerate(request.config.clients)
            if client.protocol == pb.PROTOCOL_UNSPECIFIED
        ]
        if unspecified:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "; ".join(unspecified))
        try:
            config = config_from_proto(request.config, default_id=new_id())
        except ValueError as exc:  # what is left to fail: an unknown generator name
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"config.clients[].load_generator: {exc}"
            )
        problems = _config_problems(config) or limit_problems(config, self._limits)
        if problems:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        return config

    async def _claim_slot(self, config: TestConfig, context: Any) -> str:
        """Count this test against --perf-max-concurrent-tests, or refuse it."""
        if self._stopping:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        limit = self._limits.max_concurrent_tests
        if len(self._running) >= limit:
            await _abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(self._running)} performance tests are running, the most this "
                f"coordinator runs at once (--perf-max-concurrent-tests={limit}); run this one "
                "when another has finished",
            )
        slot = f"{config.id}#{new_id()}"
        self._running[slot] = None
        return slot

    async def _mesh(self, mesh: str, context: Any) -> MeshInfo | None:
        mesh = mesh.strip().lower()
        if not mesh:
            return None
        try:
            return await self._mesh_info(mesh)
        except MeshLookupError as exc:
            await _abort(context, exc.code, exc.message)

    async def RunPerformanceTest(
        self, request: pb.RunPerformanceTestRequest, context: Any
    ) -> AsyncIterator[pb.RunPerformanceTestResponse]:
        """Progress about once a second, then the result, stored before it is sent."""
        config = await self._test_config(request, context)
        slot = await self._claim_slot(config, context)
        try:
            mesh = await self._mesh(request.mesh, context)
            environment = await self._environment()
            if self._stopping:
                await _abort(context, grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
            events: asyncio.Queue[Progress | None] = asyncio.Queue()
            run = asyncio.get_running_loop().create_task(
                run_test(
                    config,
                    mesh=mesh,
                    environment=environment,
                    on_progress=events.put_nowait,
                    time_limit_s=self._limits.max_duration_seconds,
                ),
                name=f"perf-run-{config.id}",
            )
            self._running[slot] = run
            run.add_done_callback(lambda _: events.put_nowait(None))
            try:
                while (progress := await events.get()) is not None:
                    yield pb.RunPerformanceTestResponse(progress=progress_to_proto(progress))
                result = await self._outcome(run, config, context)
            finally:  # the caller went away or the server is stopping: stop generating load
                if not run.done():
                    run.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await run
        finally:
            del self._running[slot]
        await save_result(self._store, result)
        _log.info(
            "perf.result_stored",
            result_id=result.id,
            test_id=result.test_id,
            mesh=result.mesh.type if result.mesh else NO_MESH,
            requests=result.request_count,
            actual_qps=round(result.actual_qps, 1),
            p99_ms=result.latencies.p99_ms,
        )
        yield pb.RunPerformanceTestResponse(result=result_to_proto(result))

    async def _outcome(
        self, run: asyncio.Task[PerformanceResult], config: TestConfig, context: Any
    ) -> PerformanceResult:
        """The finished run's result, or its failure as a status naming what to fix."""
        if run.cancelled():
            await _abort(
                context,
                grpc.StatusCode.UNAVAILABLE,
                f"test {config.id} was stopped: {_SHUTTING_DOWN}",
            )
        try:
            return run.result()
        except ValueError as exc:  # the target refused the config (e.g. unknown gRPC method)
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except WrkUnavailableError as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except (OSError, RuntimeError) as exc:
            _log.warning("perf.run_failed", test_id=config.id, error=str(exc))
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"test {config.id} failed: {exc}")

    async def _stored(self, result_id: str, context: Any) -> PerformanceResult:
        record = await self._store.get_perf_result(result_id)
        if record is None:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no performance result with id {quoted(result_id)}",
            )
        return await self._decoded(record, context)

    @staticmethod
    async def _decoded(record: PerfResultRecord, context: Any) -> PerformanceResult:
        try:
            return result_from_record(record)
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.DATA_LOSS, str(exc))

    async def GetPerformanceResult(
        self, request: pb.GetPerformanceResultRequest, context: Any
    ) -> pb.GetPerformanceResultResponse:
        """One stored result by id."""
        result_id = request.id.strip()
        if not result_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "id is required")
        result = await self._stored(result_id, context)
        return pb.GetPerformanceResultResponse(result=result_to_proto(result))

    async def ListPerformanceResults(
        self, request: pb.ListPerformanceResultsRequest, context: Any
    ) -> pb.ListPerformanceResultsResponse:
        """Newest first, filtered, paged by (start time, id).

        Filters run over the newest 1000 results of the store's test/mesh selection.
        """
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        if page_size < 0:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"page_size must be >= 0: {page_size}"
            )
        page_size = min(page_size, MAX_PAGE_SIZE)
        try:
            after = decode_page_token(request.page_token)
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"page_token: {exc}")
        records = await self._store.list_perf_results(
            request.mesh_type.strip().lower() or None,
            test_id=request.test_id or None,
            limit=MAX_PAGE_SIZE,
        )
        selected = self._select(records, request)
        if after is not None:
            selected = [
                r for r in selected if (r.start_time, r.id) < (after.created_at, after.row_id)
            ]
        page = selected[:page_size]
        token = ""
        if len(selected) > page_size:
            last = page[-1]
            token = encode_page_token(PageKey(created_at=last.start_time, row_id=last.id))
        return pb.ListPerformanceResultsResponse(
            results=[result_to_proto(result) for result in page], next_page_token=token
        )

    @staticmethod
    def _select(
        records: Sequence[PerfResultRecord], request: pb.ListPerformanceResultsRequest
    ) -> list[PerformanceResult]:
        started_after = _time(request.started_after, request.HasField("started_after"))
        started_before = _time(request.started_before, request.HasField("started_before"))
        selected = []
        for record in records:
            try:
                result = result_from_record(record)
            except ValueError as exc:
                _log.warning("perf.unreadable_result", result_id=record.result_id, error=str(exc))
                continue
            if result_matches(
                result,
                labels=dict(request.labels),
                test_id=request.test_id,
                mesh_type=request.mesh_type.strip(),
                started_after=started_after,
                started_before=started_before,
            ):
                selected.append(result)
        selected.sort(key=lambda r: (r.start_time, r.id), reverse=True)
        return selected

    async def ComparePerformanceResults(
        self, request: pb.ComparePerformanceResultsRequest, context: Any
    ) -> pb.ComparePerformanceResultsResponse:
        """Two or more stored results side by side, the first as the baseline."""
        ids = [result_id.strip() for result_id in request.ids]
        if len(ids) < 2 or not all(ids):
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ids: compare needs at least two non-empty result ids, got {len(ids)}",
            )
        records = {result_id: await self._store.get_perf_result(result_id) for result_id in ids}
        missing = [result_id for result_id, record in records.items() if record is None]
        if missing:
            await _abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no performance result with id {', '.join(repr(m) for m in missing)}",
            )
        results = [
            await self._decoded(record, context)
            for record in (records[result_id] for result_id in ids)
            if record is not None
        ]
        return comparison_to_proto(compare(results))
