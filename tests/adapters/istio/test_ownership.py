"""Catalogue operations and the object policy, through the Istio adapter's gRPC against kubesim.

What the mesh's declaration renders (CRDs, webhooks, cluster RBAC) installs without operator
switches; protected namespaces and ownership hold for it as for request YAML: an object meshplane
does not manage is neither taken over nor deleted unless the request adopts it, and adopting a
cluster-scoped object needs the operator's switch too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest

from adapters.istio.declaration import DECLARATION
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.model.plans import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from adapters.kit.process.cli import real_executor_factory
from adapters.kit.process.server import start_adapter
from adapters.kit.testing import AdapterClient
from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from tests.kit.toy_adapter import settings, status_code
from tests.plugins.static_http import StaticHttpServer

CRD = "apiextensions.k8s.io/v1"
GATEWAYS_CRD = "gateways.networking.istio.io"


@contextlib.asynccontextmanager
async def istio(
    sim: RunningSim,
    tmp_path: Path,
    charts: StaticHttpServer,
    mirror: StaticHttpServer,
    **changes: Any,
) -> AsyncIterator[AdapterClient]:
    adapter = await start_adapter(
        DECLARATION,
        settings(
            kubeconfig=sim.kubeconfig,
            chart_repo=charts.url,
            manifests_url=mirror.url,
            cache_dir=tmp_path / "cache",
            **changes,
        ),
        real_executor_factory,
    )
    client = AdapterClient(adapter.address)
    try:
        yield client
    finally:
        await client.close()
        await adapter.stop()


async def run(
    client: AdapterClient, operation: str, operation_id: str, **fields: Any
) -> pb.Operation:
    """Apply and wait for the operation to end (whatever its outcome)."""
    await client.apply(operation, operation_id=operation_id, **fields)
    return await client.wait(operation_id)


async def get(sim: RunningSim, *ref: Any) -> dict[str, Any] | None:
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as session:
        return await session.get(*ref)


async def create_unmanaged(sim: RunningSim, obj: dict[str, Any]) -> None:
    async with await ClusterSession.connect(kubeconfig_path=sim.kubeconfig) as session:
        await session.apply(obj, field_manager="istioctl", previous_version=None)


def managed(obj: dict[str, Any] | None) -> bool:
    assert obj is not None
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


async def test_the_install_brings_its_crds_and_webhooks_without_switches_but_not_into_kube_system(
    sim: RunningSim,
    tmp_path: Path,
    toy_chart_server: StaticHttpServer,
    toy_mirror_server: StaticHttpServer,
) -> None:
    async with istio(sim, tmp_path, toy_chart_server, toy_mirror_server) as h:
        done = await run(h, "install", "install", mesh_version="1.0.0")
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
        assert managed(await get(sim, CRD, "CustomResourceDefinition", GATEWAYS_CRD))
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await h.stub.ApplyOperation(
                pb.ApplyOperationRequest(operation="httpbin", namespace="kube-system")
            )
        assert status_code(raised.value) == grpc.StatusCode.PERMISSION_DENIED
        assert "namespace kube-system is protected" in (raised.value.details() or "")
    assert await get(sim, "v1", "Service", "httpbin", "kube-system") is None


async def test_an_unmanaged_crd_is_adopted_only_with_the_parameter_and_the_switch(
    sim: RunningSim,
    tmp_path: Path,
    toy_chart_server: StaticHttpServer,
    toy_mirror_server: StaticHttpServer,
) -> None:
    # What an earlier `istioctl install` leaves: Istio's CRD, without meshplane's labels.
    crd = {
        "apiVersion": CRD,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": GATEWAYS_CRD},
        "spec": {
            "group": "networking.istio.io",
            "scope": "Namespaced",
            "names": {"kind": "Gateway", "plural": "gateways", "singular": "gateway"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    await create_unmanaged(sim, crd)
    async with istio(sim, tmp_path, toy_chart_server, toy_mirror_server) as h:
        refused = await run(h, "install", "plain", mesh_version="1.0.0")
        assert refused.error.code == "FAILED_PRECONDITION"
        assert refused.error.message.startswith(
            f"CustomResourceDefinition {GATEWAYS_CRD} already exists and is not managed"
        )
        assert "adopt-existing=true" in refused.error.suggested_remediation
        asked = await run(
            h, "install", "adopt", mesh_version="1.0.0", parameters={"adopt-existing": "true"}
        )
        assert asked.error.code == "FAILED_PRECONDITION"
        assert "--allow-elevated-objects" in asked.error.suggested_remediation
        # Nothing was written, and the delete of a release never recorded removes nothing.
        removed = await run(h, "install", "remove", delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
    assert not managed(await get(sim, CRD, "CustomResourceDefinition", GATEWAYS_CRD))
    async with istio(
        sim, tmp_path, toy_chart_server, toy_mirror_server, allow_elevated_objects=True
    ) as h:
        done = await run(
            h, "install", "adopted", mesh_version="1.0.0", parameters={"adopt-existing": "true"}
        )
        assert done.state == pb.OPERATION_STATE_SUCCEEDED, done.error
    assert managed(await get(sim, CRD, "CustomResourceDefinition", GATEWAYS_CRD))


async def test_a_sample_never_takes_over_a_service_someone_else_runs(
    sim: RunningSim,
    tmp_path: Path,
    toy_chart_server: StaticHttpServer,
    toy_mirror_server: StaticHttpServer,
) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "httpbin", "namespace": "default", "labels": {"team": "payments"}},
        "spec": {"ports": [{"name": "web", "port": 80}], "selector": {"app": "payments"}},
    }
    await create_unmanaged(sim, service)
    async with istio(sim, tmp_path, toy_chart_server, toy_mirror_server) as h:
        refused = await run(h, "httpbin", "sample")
        assert refused.error.code == "FAILED_PRECONDITION"
        assert refused.error.message.startswith("Service default/httpbin already exists")
        removed = await run(h, "httpbin", "remove", delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
        kept = await get(sim, "v1", "Service", "httpbin", "default")
        assert kept is not None and kept["spec"]["selector"] == {"app": "payments"}
        assert await get(sim, "apps/v1", "Deployment", "httpbin-v1", "default") is None
        adopted = await run(h, "httpbin", "adopt", parameters={"adopt-existing": "true"})
        assert adopted.state == pb.OPERATION_STATE_SUCCEEDED, adopted.error
        assert managed(await get(sim, "v1", "Service", "httpbin", "default"))
        removed = await run(h, "httpbin", "remove-adopted", delete=True)
        assert removed.state == pb.OPERATION_STATE_SUCCEEDED, removed.error
    assert await get(sim, "v1", "Service", "httpbin", "default") is None
