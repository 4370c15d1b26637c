"""Each of our adapters driven the way a Meshery server drives it, over `meshes.MeshService`.

`meshplane adapter MESH` runs as a process against kubesim, with the real upstream charts from
../shared/fixtures when present (our toy charts otherwise). Stubs generated from our compat proto
register the adapter as Meshery does (SupportedOperations, then ComponentInfo, MeshName as the
health check), open StreamEvents with an empty request, then install → sample application →
delete both, each with a fresh UUID and the cluster's kubeconfig in kube_configs; every outcome
is read from the Meshery event stream and checked in the cluster.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from adapters.conformance import ClusterView, ManagedObject
from adapters.kit.process.mesh_registry import known_meshes
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from meshplane.meshery import meshops_pb2 as meshes
from meshplane.meshery import meshops_pb2_grpc as meshes_grpc
from tests.conformance.adapters_under_test import (
    ACCEPT_LOOPBACK_KUBECONFIGS,
    TOY_CONSUL,
    TOY_ISTIO,
    TOY_LINKERD,
    UPSTREAM_ENV,
    ServerFactory,
    Sources,
    running_adapter,
    upstream,
)
from tests.fixtures_paths import SHARED_FIXTURES

MESH_LABEL = "meshplane.io/mesh"
UPSTREAM = (SHARED_FIXTURES / "README.md").is_file() and os.environ.get(UPSTREAM_ENV) != "0"
"""The real upstream charts when present (``MESHPLANE_CONFORMANCE_UPSTREAM=0``: our toy ones)."""
# mesh → (toy sources, upstream sources, sample application and its namespace)
MESHES: dict[str, tuple[Callable[[Path], Sources], Callable[[Path], Sources], str, str]] = {
    "istio": (TOY_ISTIO, upstream("istio"), "bookinfo", "default"),
    "linkerd": (TOY_LINKERD, upstream("linkerd"), "emojivoto", "emojivoto"),
    "consul": (TOY_CONSUL, upstream("hashicorp"), "static-server", "default"),
}
OUTCOMES = ("succeeded", "failed", "cancelled", "interrupted")


class MesheryEvents:
    """Follows the Meshery StreamEvents call into a list (read by the test, one reader)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.events: list[meshes.EventsResponse] = []

    async def outcome(self, operation: str, operation_id: str, within: float = 120) -> Any:
        """Read until the operation's final event (`<operation> succeeded|failed|...`)."""
        finals = {f"{operation} {outcome}" for outcome in OUTCOMES}
        async with asyncio.timeout(within):
            for event in self.of(operation_id):
                if event.summary in finals:
                    return event
            while (event := await self.call.read()) is not grpc.aio.EOF:
                self.events.append(event)
                if event.operation_id == operation_id and event.summary in finals:
                    return event
        raise AssertionError(f"the stream ended before {operation} {operation_id} finished")

    def of(self, operation_id: str) -> list[meshes.EventsResponse]:
        return [e for e in self.events if e.operation_id == operation_id]


async def labelled(sim: RunningSim, mesh: str) -> set[ManagedObject]:
    """Every meshplane object in the cluster carrying ``mesh``'s label."""
    async with await ClusterView.connect(sim.kubeconfig) as view:
        found = await view.labelled()
    return {key for key, labels in found.items() if labels.get(MESH_LABEL) == mesh}


async def run(
    stub: meshes_grpc.MeshServiceStub,
    events: MesheryEvents,
    operation: str,
    **fields: Any,
) -> str:
    """One Meshery ApplyOperation (fresh UUID), awaited on the Meshery event stream."""
    operation_id = str(uuid.uuid4())
    reply = await stub.ApplyOperation(
        meshes.ApplyRuleRequest(opName=operation, operation_id=operation_id, **fields),
        timeout=30,
    )
    assert (reply.operation_id, reply.error) == (operation_id, "")
    final = await events.outcome(operation, operation_id)
    assert final.summary == f"{operation} succeeded", (
        final.summary,
        final.details,
        final.error_code,
        final.suggested_remediation,
    )
    assert final.event_type == meshes.INFO
    return operation_id


@dataclass(frozen=True, kw_only=True)
class Meshery:
    """What a Meshery server holds for one adapter: its stub, its event stream, the cluster."""

    stub: meshes_grpc.MeshServiceStub
    events: MesheryEvents
    sim: RunningSim
    mesh: str
    kubeconfig: str

    async def run(self, operation: str, **fields: Any) -> str:
        return await run(
            self.stub, self.events, operation, kube_configs=[self.kubeconfig], **fields
        )


async def register(stub: meshes_grpc.MeshServiceStub, mesh: str, sample: str) -> list[str]:
    """Registration, as Meshery's server does it; the mesh versions offered."""
    supported = await stub.SupportedOperations(meshes.SupportedOperationsRequest())
    assert supported.error == ""
    categories = {op.key: op.category for op in supported.ops}
    assert categories["install"] == meshes.INSTALL
    assert categories[sample] == meshes.SAMPLE_APPLICATION
    assert categories["custom"] == meshes.CUSTOM
    info = await stub.ComponentInfo(meshes.ComponentInfoRequest())
    assert (info.type, info.name) == ("adapter", mesh.upper())
    assert info.version and info.git_sha
    assert (await stub.MeshName(meshes.MeshNameRequest())).name == mesh.upper()
    versions = list((await stub.MeshVersions(meshes.MeshVersionsRequest())).version)
    assert versions, "MeshVersions is read from the chart index"
    return versions


async def install(meshery: Meshery, version: str) -> tuple[str, set[ManagedObject]]:
    """Install over Meshery; the operation id and the mesh's objects it left in the cluster."""
    operation_id = await meshery.run("install", version=version)
    installed = await labelled(meshery.sim, meshery.mesh)
    assert installed, "the install applied nothing"
    install_events = meshery.events.of(operation_id)
    assert install_events[0].summary == "install accepted, attempt 1"
    assert {(e.component, e.component_name) for e in install_events} == {
        ("adapter", meshery.mesh.upper())
    }
    assert any("cluster kubesim" in e.details for e in install_events)
    return operation_id, installed


async def assert_native_record(channel: grpc.aio.Channel, install: str, version: str) -> None:
    """The same operation, seen through the native contract."""
    native = pb_grpc.MeshAdapterServiceStub(channel)
    record = await native.GetOperation(pb.GetOperationRequest(operation_id=install))
    assert record.operation.operation == "install"
    assert record.operation.mesh_version == version
    assert list(record.operation.clusters) == ["kubesim"]
    assert record.operation.state == pb.OPERATION_STATE_SUCCEEDED


async def add_and_delete_sample(
    meshery: Meshery, sample: str, namespace: str, installed: set[ManagedObject]
) -> None:
    """The sample adds objects only in its namespace; deleting it leaves the install as it was."""
    await meshery.run(sample, namespace=namespace)
    added = await labelled(meshery.sim, meshery.mesh) - installed
    # The sample's objects (and the Namespace object, for a sample that brings it).
    assert namespace in {o.namespace for o in added}
    assert {o.namespace for o in added} <= {namespace, ""}
    await meshery.run(sample, namespace=namespace, delete_op=True)
    assert await labelled(meshery.sim, meshery.mesh) == installed


async def uninstall_keeps_only_crds(meshery: Meshery, installed: set[ManagedObject]) -> None:
    """Meshery cannot ask to purge CRDs: they stay (users' custom resources live in them);
    everything else of the mesh is gone."""
    await meshery.run("install", delete_op=True)
    left = await labelled(meshery.sim, meshery.mesh)
    assert left == {o for o in installed if o.kind == "CustomResourceDefinition"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("mesh", known_meshes())
async def test_meshery_installs_a_sample_and_deletes_both(
    mesh: str, kubesim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    if mesh not in MESHES:
        pytest.fail(f"mesh {mesh!r} is registered but has no charts and sample in MESHES")
    toy, real, sample, sample_namespace = MESHES[mesh]
    sources = (real if UPSTREAM else toy)(tmp_path)
    kubeconfig = kubesim.kubeconfig.read_text(encoding="utf-8")
    with running_adapter(
        mesh,
        sources,
        sim=kubesim,
        tmp_path=tmp_path,
        serve=static_http_server,
        extra_args=ACCEPT_LOOPBACK_KUBECONFIGS,
    ) as adapter:
        async with grpc.aio.insecure_channel(adapter.address) as channel:
            stub = meshes_grpc.MeshServiceStub(channel)
            versions = await register(stub, mesh, sample)
            call = stub.StreamEvents(meshes.EventsRequest())
            await call.wait_for_connection()
            meshery = Meshery(
                stub=stub, events=MesheryEvents(call), sim=kubesim, mesh=mesh, kubeconfig=kubeconfig
            )
            try:
                operation_id, installed = await install(meshery, versions[0])
                await assert_native_record(channel, operation_id, versions[0])
                await add_and_delete_sample(meshery, sample, sample_namespace, installed)
                await uninstall_keeps_only_crds(meshery, installed)
            finally:
                call.cancel()
