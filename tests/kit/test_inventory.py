"""The release inventory Secret: stored form, digest, reading back, corruption, status."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.inventory import (
    INVENTORY_TYPE,
    ReleaseRecord,
    ReleaseState,
    canonical_json,
    delete_inventory,
    inventory_name,
    plan_digest,
    read_inventory,
    release_status,
    write_inventory,
)
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.apply.release_labels import labelled
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import ApplyPlan, Progress, WaitPolicy
from kubesim.harness import RunningSim


def objects() -> tuple[KubeObject, ...]:
    return (
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mesh"}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "mesh-config", "namespace": "mesh"},
            "data": {"mode": "strict"},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "control", "namespace": "mesh"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "control"}},
                "template": {
                    "metadata": {"labels": {"app": "control"}},
                    "spec": {"containers": [{"name": "c", "image": "example/control:1"}]},
                },
            },
        },
    )


def plan(items: tuple[KubeObject, ...] | None = None) -> ApplyPlan:
    return ApplyPlan(
        release="install",
        namespace="mesh",
        mesh="toy",
        objects=items if items is not None else objects(),
        metadata={"mesh_version": "1.2.3", "values_digest": "sha256:abc"},
        wait_policy=WaitPolicy(timeout_seconds=10),
    )


def test_record_round_trips_through_its_stored_form() -> None:
    record = ReleaseRecord(
        release="install",
        namespace="mesh",
        mesh="toy",
        status=ReleaseState.PENDING_UPGRADE,
        revision=3,
        objects=plan().refs,
        previous_objects=plan().refs[:1],
        hook_objects=(
            ObjectRef(api_version="batch/v1", kind="Job", namespace="mesh", name="migrate"),
        ),
        keep=frozenset({plan().refs[0].key}),
        metadata={"mesh_version": "1.2.3"},
        plan_digest="sha256:0",
        created="2026-01-01T00:00:00Z",
        updated="2026-01-02T00:00:00Z",
    )
    assert ReleaseRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(ValueError, match="malformed"):
        ReleaseRecord.from_json({"release": "x", "namespace": "y", "status": "exploded"})


def test_plan_digest_is_canonical_and_content_sensitive() -> None:
    first = plan()
    reordered_keys = tuple(dict(reversed(list(obj.items()))) for obj in objects())
    assert plan_digest(first) == plan_digest(plan(reordered_keys))
    changed = list(objects())
    changed[1] = {**changed[1], "data": {"mode": "permissive"}}
    assert plan_digest(first) != plan_digest(plan(tuple(changed)))
    assert plan_digest(first).startswith("sha256:")
    # Bodies encoded once by the apply engine give the digest the objects give.
    assert plan_digest(first, [canonical_json(o) for o in first.objects]) == plan_digest(first)


@pytest.fixture
async def session(kubesim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        yield cluster


async def test_written_record_is_a_typed_labelled_secret(session: ClusterSession) -> None:
    record = ReleaseRecord(
        release="install",
        namespace="default",
        mesh="toy",
        status=ReleaseState.PENDING_INSTALL,
        revision=1,
        objects=plan().refs,
    )
    await write_inventory(session, record)

    secret = await session.get("v1", "Secret", inventory_name("install"), "default")
    assert secret is not None
    assert secret["type"] == INVENTORY_TYPE
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshplane"
    assert secret["metadata"]["labels"]["meshplane.io/mesh"] == "toy"
    stored = json.loads(base64.b64decode(secret["data"]["release"]))
    assert stored["status"] == "pending-install"
    assert [item["kind"] for item in stored["objects"]] == ["Namespace", "ConfigMap", "Deployment"]
    assert await read_inventory(session, "default", "install", mesh="toy") == record

    await write_inventory(session, record.with_status(ReleaseState.DEPLOYED))
    read_back = await read_inventory(session, "default", "install", mesh="toy")
    assert read_back is not None and read_back.status is ReleaseState.DEPLOYED

    assert await delete_inventory(session, "default", "install")
    assert await read_inventory(session, "default", "install", mesh="toy") is None
    assert not await delete_inventory(session, "default", "install")


async def test_a_corrupt_record_is_reported(session: ClusterSession) -> None:
    await session.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": INVENTORY_TYPE,
            "metadata": {"name": inventory_name("broken"), "namespace": "default"},
            "data": {"release": base64.b64encode(b"{not json").decode()},
        }
    )
    with pytest.raises(ApplyError) as caught:
        await read_inventory(session, "default", "broken", mesh="toy")
    assert caught.value.detail.code == "INVENTORY_CORRUPT"


async def test_release_status_reports_components_and_version(session: ClusterSession) -> None:
    assert await release_status(session, "mesh", "install", mesh="toy") is None
    events: list[Progress] = []
    await Applier(session).install_or_upgrade(plan(), events.append)

    status = await release_status(session, "mesh", "install", mesh="toy")

    assert status is not None
    assert status.installed
    assert status.version == "1.2.3"
    assert status.record.metadata["values_digest"] == "sha256:abc"
    # The digest of the objects as applied: labelled as the release's.
    applied = plan()
    bodies = [canonical_json(labelled(o, applied.release, applied.mesh)) for o in applied.objects]
    assert status.record.plan_digest == plan_digest(applied, bodies)
    assert [(c.ref.kind, c.ref.name, c.ready) for c in status.components] == [
        ("Deployment", "control", True)
    ]

    await session.delete(
        ObjectRef(api_version="apps/v1", kind="Deployment", namespace="mesh", name="control")
    )
    status = await release_status(session, "mesh", "install", mesh="toy")
    assert status is not None
    assert [(c.ready, c.message) for c in status.components] == [(False, "missing")]


async def test_status_of_a_release_another_mesh_recorded_is_not_installed(
    session: ClusterSession,
) -> None:
    await Applier(session).install_or_upgrade(plan(), lambda _: None)

    assert await release_status(session, "mesh", "install", mesh="other") is None
    with pytest.raises(ApplyError) as caught:
        await read_inventory(session, "mesh", "install", mesh="other")
    assert caught.value.detail.code == "RELEASE_OWNED_BY_OTHER_MESH"
