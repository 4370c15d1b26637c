"""Two meshes' adapters on one cluster: neither deletes, prunes nor adopts the other's release.

Every mesh has an `install` and most an `httpbin`: releases are named per mesh, so the same
operation id of two meshes is two releases, and an object one mesh applied is not taken over by
the other (the second apply fails naming the first's release).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.conformance import ClusterView, ManagedObject
from adapters.kit.testing import AdapterClient
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.conformance.adapters_under_test import (
    TOY_CONSUL,
    TOY_ISTIO,
    TOY_LINKERD,
    ServerFactory,
    Sources,
    running_adapter,
)

MESH_LABEL = "meshplane.io/mesh"
RELEASE_LABEL = "meshplane.io/release"
INVENTORY_LABEL = "meshplane.io/inventory-of"


def releases(objects: dict[ManagedObject, dict[str, str]]) -> set[str]:
    """Releases the objects belong to (an inventory Secret names the release it records)."""
    return {labels.get(RELEASE_LABEL) or labels[INVENTORY_LABEL] for labels in objects.values()}


@contextlib.asynccontextmanager
async def adapter_client(
    mesh: str, sim: RunningSim, tmp_path: Path, serve: ServerFactory
) -> AsyncIterator[AdapterClient]:
    """`meshplane adapter MESH` on the toy charts, managing ``sim``, and a client to it."""
    make: dict[str, Sources] = {
        "istio": TOY_ISTIO(tmp_path),
        "linkerd": TOY_LINKERD(tmp_path),
        "consul": TOY_CONSUL(tmp_path),
    }
    with running_adapter(mesh, make[mesh], sim=sim, tmp_path=tmp_path, serve=serve) as process:
        client = AdapterClient(process.address)
        try:
            await client.wait_serving()
            yield client
        finally:
            await client.close()


async def labelled_by_mesh(sim: RunningSim, mesh: str) -> dict[ManagedObject, dict[str, str]]:
    """Every meshplane object the cluster holds that carries ``mesh``'s label."""
    async with await ClusterView.connect(sim.kubeconfig) as view:
        found = await view.labelled()
    return {key: labels for key, labels in found.items() if labels.get(MESH_LABEL) == mesh}


async def mesh_status(client: AdapterClient) -> pb.GetMeshStatusResponse:
    reply: pb.GetMeshStatusResponse = await client.stub.GetMeshStatus(
        pb.GetMeshStatusRequest(), timeout=10
    )
    return reply


@pytest.mark.timeout(90)
async def test_one_meshs_sample_does_not_take_over_or_delete_anothers(
    kubesim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    async with (
        adapter_client("istio", kubesim, tmp_path, static_http_server) as istio,
        adapter_client("linkerd", kubesim, tmp_path, static_http_server) as linkerd,
    ):
        await istio.run("httpbin", operation_id="istio-httpbin", namespace="default")
        istio_objects = await labelled_by_mesh(kubesim, "istio")
        service = ManagedObject(group="", kind="Service", namespace="default", name="httpbin")
        assert istio_objects[service][RELEASE_LABEL] == "istio-httpbin"

        await linkerd.apply("httpbin", operation_id="linkerd-httpbin", namespace="default")
        refused = await linkerd.wait("linkerd-httpbin")

        assert refused.state == pb.OPERATION_STATE_FAILED
        assert refused.error.code == "OBJECT_OWNED_BY_OTHER_MESH"
        assert "Service default/httpbin" in refused.error.message
        assert "istio-httpbin (mesh istio)" in refused.error.message
        assert refused.error.suggested_remediation
        assert await labelled_by_mesh(kubesim, "istio") == istio_objects
        assert await labelled_by_mesh(kubesim, "linkerd") == {}

        # Linkerd's httpbin is not installed: deleting it leaves Istio's alone.
        await linkerd.run(
            "httpbin", operation_id="linkerd-httpbin-delete", namespace="default", delete=True
        )
        assert await labelled_by_mesh(kubesim, "istio") == istio_objects

        await istio.run(
            "httpbin", operation_id="istio-httpbin-delete", namespace="default", delete=True
        )
        assert await labelled_by_mesh(kubesim, "istio") == {}


@pytest.mark.timeout(90)
async def test_another_meshs_install_in_the_same_namespace_leaves_the_first_intact(
    kubesim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    async with (
        adapter_client("linkerd", kubesim, tmp_path, static_http_server) as linkerd,
        adapter_client("consul", kubesim, tmp_path, static_http_server) as consul,
    ):
        await linkerd.run("install", operation_id="linkerd-install")
        before = await mesh_status(linkerd)
        linkerd_objects = await labelled_by_mesh(kubesim, "linkerd")
        assert before.installed and before.version
        assert len(linkerd_objects) > 5
        assert releases(linkerd_objects) == {"linkerd-install"}
        assert not (await mesh_status(consul)).installed

        await consul.run("install", operation_id="consul-install", namespace=before.namespace)
        consul_objects = await labelled_by_mesh(kubesim, "consul")
        assert consul_objects
        assert releases(consul_objects) == {"consul-install"}
        assert await labelled_by_mesh(kubesim, "linkerd") == linkerd_objects
        assert await mesh_status(linkerd) == before

        await consul.run(
            "install",
            operation_id="consul-install-delete",
            namespace=before.namespace,
            delete=True,
            parameters={"purge-crds": "true"},
        )
        assert await labelled_by_mesh(kubesim, "consul") == {}
        assert await labelled_by_mesh(kubesim, "linkerd") == linkerd_objects
        assert await mesh_status(linkerd) == before
