"""The apply engine against kubesim: install, re-install, upgrade with prune, uninstall, hooks,
failures, field ownership, fault injection and cancellation, through the public interfaces."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from adapters.kit.apply.applier import Applier
from adapters.kit.apply.cluster import ClusterSession
from adapters.kit.apply.inventory import ReleaseState, read_inventory
from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.ordering import sort_for_install
from adapters.kit.model.plans import (
    MANAGED_BY_LABEL,
    MESH_LABEL,
    RELEASE_LABEL,
    ApplyPlan,
    CrdRemoval,
    Hook,
    HookPhase,
    Progress,
    ProgressKind,
    WaitPolicy,
)
from kubesim.harness import RunningSim
from tests.fixtures_paths import OWN_FIXTURES, shared_fixtures

SMALL = OWN_FIXTURES / "kit" / "apply" / "small-release.yaml"
RELEASE = "shop"
MESH = "test"
NAMESPACE = "shop"


class Recorder:
    """A progress sink that keeps everything it is told."""

    def __init__(self) -> None:
        self.events: list[Progress] = []

    def __call__(self, progress: Progress) -> None:
        self.events.append(progress)

    def of(self, kind: ProgressKind) -> list[Progress]:
        return [event for event in self.events if event.kind is kind]

    def names(self, kind: ProgressKind) -> list[str]:
        return [f"{event.ref.kind}/{event.ref.name}" for event in self.of(kind)]


def load_documents(path: Path) -> list[KubeObject]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def make_plan(
    documents: Iterable[KubeObject],
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    timeout: float = 20.0,
    **extra: Any,
) -> ApplyPlan:
    """Split hooks from objects and order objects, as planning does for a rendered chart
    (for an install, which creates missing namespaces, unless ``create_namespaces`` says)."""
    extra.setdefault("create_namespaces", True)
    objects: list[KubeObject] = []
    hooks: list[Hook] = []
    for doc in documents:
        annotations = doc["metadata"].get("annotations") or {}
        if "helm.sh/hook" not in annotations:
            objects.append(doc)
            continue
        policies = annotations.get("helm.sh/hook-delete-policy", "before-hook-creation")
        hooks.append(
            Hook(
                manifest=doc,
                phases=tuple(HookPhase(e.strip()) for e in annotations["helm.sh/hook"].split(",")),
                delete_policies=tuple(p.strip() for p in policies.split(",")),
            )
        )
    return ApplyPlan(
        release=release,
        namespace=namespace,
        mesh=MESH,
        objects=tuple(sort_for_install(objects)),
        hooks=tuple(hooks),
        metadata={"chart_version": "1.0.0", "mesh_version": "1.0.0"},
        wait_policy=WaitPolicy(timeout_seconds=timeout, poll_interval_seconds=0.1),
        **extra,
    )


@pytest.fixture
async def session(kubesim: RunningSim) -> AsyncIterator[ClusterSession]:
    async with await ClusterSession.connect(kubeconfig_path=kubesim.kubeconfig) as cluster:
        yield cluster


async def resource_versions(session: ClusterSession, refs: Iterable[ObjectRef]) -> dict[str, str]:
    found: dict[str, str] = {}
    for ref in refs:
        obj = await session.get_ref(ref)
        assert obj is not None, f"{ref} missing"
        found[ref.key] = obj["metadata"]["resourceVersion"]
    return found


async def labelled_with_release(session: ClusterSession, release: str) -> list[str]:
    """Everything in the cluster carrying the release label, across namespaces and kinds."""
    kinds = [
        ("v1", "Namespace"),
        ("v1", "ConfigMap"),
        ("v1", "ServiceAccount"),
        ("v1", "Service"),
        ("v1", "Secret"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("example.meshplane.io/v1", "Widget"),
    ]
    found: list[str] = []
    for api_version, kind in kinds:
        for obj in await session.list(
            api_version, kind, label_selector=f"{RELEASE_LABEL}={release}"
        ):
            if not obj["metadata"].get("deletionTimestamp"):
                found.append(f"{kind}/{obj['metadata']['name']}")
    return found


async def test_install_applies_in_order_labels_waits_and_records(session: ClusterSession) -> None:
    plan = make_plan(load_documents(SMALL))
    sink = Recorder()

    outcome = await Applier(session).install_or_upgrade(plan, sink)

    assert outcome.applied == len(plan.objects)
    assert not outcome.noop
    applied = sink.names(ProgressKind.APPLIED)
    assert applied.index("Namespace/shop") < applied.index(
        "CustomResourceDefinition/widgets.example.meshplane.io"
    )
    assert applied.index("ConfigMap/web-config") < applied.index("Deployment/web")
    assert applied.index("Deployment/web") < applied.index("Widget/blue")
    ready = sink.names(ProgressKind.READY)
    assert ready == ["CustomResourceDefinition/widgets.example.meshplane.io", "Deployment/web"]
    # The CRD was ready before its custom resource was applied.
    kinds_in_order = [(e.kind, e.ref.kind) for e in sink.events]
    assert kinds_in_order.index(
        (ProgressKind.READY, "CustomResourceDefinition")
    ) < kinds_in_order.index((ProgressKind.APPLIED, "Widget"))
    assert sink.names(ProgressKind.HOOK_COMPLETED) == ["Job/web-migrate"]
    assert outcome.ready == 2

    for ref in plan.refs:
        obj = await session.get_ref(ref)
        assert obj is not None, ref
        labels = obj["metadata"]["labels"]
        assert labels[MANAGED_BY_LABEL] == "meshplane"
        assert labels[RELEASE_LABEL] == RELEASE
        assert labels[MESH_LABEL] == MESH
    deployment = await session.get("apps/v1", "Deployment", "web", NAMESPACE)
    assert deployment is not None
    assert RELEASE_LABEL not in deployment["spec"]["template"]["metadata"]["labels"]
    # hook-succeeded: the hook Job is gone once it completed.
    assert await session.get("batch/v1", "Job", "web-migrate", NAMESPACE) is None

    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None
    assert record.status is ReleaseState.DEPLOYED
    assert record.revision == 1
    assert record.objects == plan.refs
    assert record.metadata["chart_version"] == "1.0.0"
    assert record.plan_digest.startswith("sha256:")


async def test_reinstall_is_a_noop_and_bumps_nothing(session: ClusterSession) -> None:
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    await applier.install_or_upgrade(plan, Recorder())
    before = await resource_versions(session, plan.refs)
    sink = Recorder()

    outcome = await applier.install_or_upgrade(plan, sink)

    assert outcome.noop
    assert outcome.unchanged == len(plan.objects)
    assert outcome.applied == 0
    assert {e.kind for e in sink.events} == {ProgressKind.UNCHANGED}
    assert await resource_versions(session, plan.refs) == before
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None and record.revision == 1


async def test_reinstall_restores_an_object_deleted_behind_our_back(
    session: ClusterSession,
) -> None:
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    await applier.install_or_upgrade(plan, Recorder())
    config = ObjectRef(api_version="v1", kind="ConfigMap", namespace=NAMESPACE, name="web-config")
    assert await session.delete(config)
    others = [ref for ref in plan.refs if ref != config]
    before = await resource_versions(session, others)
    sink = Recorder()

    outcome = await applier.install_or_upgrade(plan, sink)

    assert not outcome.noop
    assert sink.names(ProgressKind.APPLIED) == ["ConfigMap/web-config"]
    assert outcome.applied == 1
    assert await session.get_ref(config) is not None
    # Server-side apply of identical objects moved nothing else.
    assert await resource_versions(session, others) == before


async def test_upgrade_prunes_removed_objects_and_applies_changed_ones(
    session: ClusterSession,
) -> None:
    documents = load_documents(SMALL)
    applier = Applier(session)
    await applier.install_or_upgrade(make_plan(documents), Recorder())
    changed = copy.deepcopy(documents)
    changed = [d for d in changed if d["kind"] != "Role" and d["kind"] != "RoleBinding"]
    for doc in changed:
        if doc["kind"] == "ConfigMap":
            doc["data"]["GREETING"] = "bonjour"
    plan = make_plan(changed)
    sink = Recorder()

    outcome = await applier.install_or_upgrade(plan, sink)

    assert sorted(sink.names(ProgressKind.PRUNED)) == ["Role/web-reader", "RoleBinding/web-reader"]
    assert sink.names(ProgressKind.APPLIED) == ["ConfigMap/web-config"]
    assert outcome.deleted == 2
    assert outcome.applied == 1
    assert outcome.unchanged == len(plan.objects) - 1
    # RoleBinding (uses the Role) goes before the Role.
    pruned = sink.names(ProgressKind.PRUNED)
    assert pruned.index("RoleBinding/web-reader") < pruned.index("Role/web-reader")
    assert (
        await session.get("rbac.authorization.k8s.io/v1", "Role", "web-reader", NAMESPACE) is None
    )
    config = await session.get("v1", "ConfigMap", "web-config", NAMESPACE)
    assert config is not None and config["data"]["GREETING"] == "bonjour"
    # post-upgrade hook ran again.
    assert sink.names(ProgressKind.HOOK_COMPLETED) == ["Job/web-migrate"]
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None
    assert record.status is ReleaseState.DEPLOYED
    assert record.revision == 2
    assert record.objects == plan.refs
    assert record.previous_objects == ()


async def test_upgrade_keeps_objects_marked_keep(session: ClusterSession) -> None:
    documents = load_documents(SMALL)
    crd = next(d for d in documents if d["kind"] == "CustomResourceDefinition")
    crd_key = ObjectRef.from_manifest(crd).key
    applier = Applier(session)
    await applier.install_or_upgrade(make_plan(documents, keep=frozenset({crd_key})), Recorder())
    without_crd = [d for d in documents if d["kind"] not in ("CustomResourceDefinition", "Widget")]
    sink = Recorder()

    await applier.install_or_upgrade(make_plan(without_crd), sink)

    assert sink.names(ProgressKind.KEPT) == [
        "CustomResourceDefinition/widgets.example.meshplane.io"
    ]
    assert sink.names(ProgressKind.PRUNED) == ["Widget/blue"]
    assert await session.get_ref(ObjectRef.from_manifest(crd)) is not None


async def test_uninstall_removes_everything_of_the_release(session: ClusterSession) -> None:
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    await applier.install_or_upgrade(plan, Recorder())
    assert await labelled_with_release(session, RELEASE)
    sink = Recorder()

    outcome = await applier.uninstall(RELEASE, NAMESPACE, sink, mesh=MESH, crds=CrdRemoval.PURGE)

    assert outcome.deleted == len(plan.objects)
    assert outcome.crds_kept == 0
    deleted = sink.names(ProgressKind.DELETED)
    assert deleted[0] == "Widget/blue"  # custom resources before the CRD that serves them
    assert deleted.index("Service/web") < deleted.index("Deployment/web")
    assert "CustomResourceDefinition/widgets.example.meshplane.io" in deleted
    assert deleted[-1] == "Namespace/shop"
    assert await labelled_with_release(session, RELEASE) == []
    assert await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH) is None

    again = await applier.uninstall(
        RELEASE, NAMESPACE, Recorder(), mesh=MESH, crds=CrdRemoval.PURGE
    )
    assert again.deleted == 0


WIDGETS_CRD = "CustomResourceDefinition/widgets.example.meshplane.io"


async def test_uninstall_keeps_the_crds_unless_asked_and_purges_them_later(
    session: ClusterSession,
) -> None:
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    await applier.install_or_upgrade(plan, Recorder())
    sink = Recorder()

    outcome = await applier.uninstall(RELEASE, NAMESPACE, sink, mesh=MESH)

    assert (outcome.deleted, outcome.crds_kept) == (len(plan.objects) - 1, 1)
    assert "Widget/blue" in sink.names(ProgressKind.DELETED)  # the release's own resource goes
    assert WIDGETS_CRD not in sink.names(ProgressKind.DELETED)
    assert sink.names(ProgressKind.KEPT) == [WIDGETS_CRD]
    assert "purge-crds=true" in sink.of(ProgressKind.KEPT)[0].message
    # Everything else is gone; the CRD keeps the release's labels, the record is gone.
    assert await labelled_with_release(session, RELEASE) == [WIDGETS_CRD]
    assert await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH) is None

    # Not installed, nothing asked: nothing to do. Asked: the kept CRD goes, found by label.
    assert (await applier.uninstall(RELEASE, NAMESPACE, Recorder(), mesh=MESH)).noop
    sink = Recorder()
    purged = await applier.uninstall(RELEASE, NAMESPACE, sink, mesh=MESH, crds=CrdRemoval.PURGE)
    assert (purged.deleted, sink.names(ProgressKind.DELETED)) == (1, [WIDGETS_CRD])
    assert await labelled_with_release(session, RELEASE) == []


def user_widget(namespace: str, name: str) -> KubeObject:
    """A custom resource of the release's CRD that a user wrote (no meshplane labels)."""
    return {
        "apiVersion": "example.meshplane.io/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"size": 1},
    }


async def test_purging_crds_is_refused_while_users_custom_resources_exist_unless_forced(
    session: ClusterSession,
) -> None:
    """Issue 15: `install --delete` took every user VirtualService with Istio's CRDs."""
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    await applier.install_or_upgrade(plan, Recorder())
    for namespace, name in (("default", "red"), ("default", "green"), ("kube-public", "mine")):
        await session.apply(user_widget(namespace, name))
    before = await labelled_with_release(session, RELEASE)

    with pytest.raises(ApplyError) as refused:
        await applier.uninstall(RELEASE, NAMESPACE, Recorder(), mesh=MESH, crds=CrdRemoval.PURGE)

    assert refused.value.detail.code == "FAILED_PRECONDITION"
    assert refused.value.detail.message == (
        "3 Widget (example.meshplane.io) objects in 2 namespaces still exist; delete them or "
        "pass --param purge-crds=force"
    )
    # Refused before anything was touched: the release is still deployed, whole.
    assert await labelled_with_release(session, RELEASE) == before
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None and record.status is ReleaseState.DEPLOYED

    # The default keeps the CRD, so the users' widgets survive the uninstall.
    await applier.uninstall(RELEASE, NAMESPACE, Recorder(), mesh=MESH)
    assert await session.get("example.meshplane.io/v1", "Widget", "red", "default") is not None
    with pytest.raises(ApplyError) as still:
        await applier.uninstall(RELEASE, NAMESPACE, Recorder(), mesh=MESH, crds=CrdRemoval.PURGE)
    assert still.value.detail.message.startswith("3 Widget (example.meshplane.io) objects")

    forced = await applier.uninstall(
        RELEASE, NAMESPACE, Recorder(), mesh=MESH, crds=CrdRemoval.FORCE
    )
    assert forced.deleted == 1
    assert await labelled_with_release(session, RELEASE) == []
    assert not await session.has_kind("example.meshplane.io/v1", "Widget")


async def test_an_object_another_mesh_applied_is_refused_not_taken_over(
    session: ClusterSession,
) -> None:
    config: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "httpbin", "namespace": "default"},
        "data": {"by": "first"},
    }
    applier = Applier(session)
    first = dataclasses.replace(make_plan([config], release="istio-httpbin"), mesh="istio")
    await applier.install_or_upgrade(first, Recorder())
    theirs = copy.deepcopy(config)
    theirs["data"] = {"by": "second"}
    second = make_plan([theirs], release="linkerd-httpbin")

    with pytest.raises(ApplyError) as caught:
        await applier.install_or_upgrade(second, Recorder())

    detail = caught.value.detail
    assert detail.code == "OBJECT_OWNED_BY_OTHER_MESH"
    assert "istio-httpbin (mesh istio)" in detail.message
    assert "ConfigMap default/httpbin" in detail.message
    assert "istio-httpbin" in detail.suggested_remediation
    found = await session.get("v1", "ConfigMap", "httpbin", "default")
    assert found is not None
    assert found["data"] == {"by": "first"}
    assert found["metadata"]["labels"][RELEASE_LABEL] == "istio-httpbin"
    # Refused before anything was written: no inventory of the refused release.
    assert await read_inventory(session, NAMESPACE, "linkerd-httpbin", mesh=MESH) is None


async def test_a_later_release_of_the_same_mesh_takes_the_object_over(
    session: ClusterSession,
) -> None:
    route: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "reviews", "namespace": "default"},
        "data": {"to": "v1"},
    }
    applier = Applier(session)
    await applier.install_or_upgrade(make_plan([route], release="test-route-v1"), Recorder())
    replaced = copy.deepcopy(route)
    replaced["data"] = {"to": "v2"}

    await applier.install_or_upgrade(make_plan([replaced], release="test-route-v2"), Recorder())

    found = await session.get("v1", "ConfigMap", "reviews", "default")
    assert found is not None
    assert found["data"] == {"to": "v2"}
    assert found["metadata"]["labels"][RELEASE_LABEL] == "test-route-v2"


async def test_an_inventory_of_another_mesh_is_not_adopted(session: ClusterSession) -> None:
    config: KubeObject = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NAMESPACE},
    }
    applier = Applier(session)
    theirs = dataclasses.replace(make_plan([config], release="shared-name"), mesh="other")
    await applier.install_or_upgrade(theirs, Recorder())
    ours = make_plan([config], release="shared-name")

    for attempt in (
        applier.install_or_upgrade(ours, Recorder()),
        applier.uninstall("shared-name", NAMESPACE, Recorder(), mesh=MESH),
    ):
        with pytest.raises(ApplyError) as caught:
            await attempt
        assert caught.value.detail.code == "RELEASE_OWNED_BY_OTHER_MESH"
        assert f"{NAMESPACE}/meshplane-release-shared-name" in caught.value.detail.message
        assert "'other'" in caught.value.detail.message
    assert await session.get("v1", "ConfigMap", "settings", NAMESPACE) is not None
    record = await read_inventory(session, NAMESPACE, "shared-name", mesh="other")
    assert record is not None and record.status is ReleaseState.DEPLOYED


async def test_uninstall_of_unknown_release_succeeds_with_nothing_deleted(
    session: ClusterSession,
) -> None:
    sink = Recorder()
    outcome = await Applier(session).uninstall("never-installed", "default", sink, mesh=MESH)
    assert outcome.deleted == 0
    assert sink.events == []


async def test_failing_workload_reports_the_cluster_reason(session: ClusterSession) -> None:
    documents = load_documents(SMALL)
    for doc in documents:
        if doc["kind"] == "Deployment":
            doc["metadata"]["annotations"] = {"kubesim.meshplane.io/fail": "ImagePullBackOff"}
    plan = make_plan([d for d in documents if d["kind"] != "Job"], timeout=2.0)
    sink = Recorder()

    with pytest.raises(ApplyError) as caught:
        await Applier(session).install_or_upgrade(plan, sink)

    assert caught.value.detail.code == "WORKLOAD_NOT_READY"
    assert "ImagePullBackOff" in caught.value.detail.message
    assert caught.value.detail.suggested_remediation
    failed = sink.of(ProgressKind.FAILED)
    assert [f"{e.ref.kind}/{e.ref.name}" for e in failed] == ["Deployment/web"]
    assert failed[0].reason == "ImagePullBackOff"
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None and record.status is ReleaseState.PENDING_INSTALL


async def test_failing_hook_job_fails_the_install(session: ClusterSession) -> None:
    documents = load_documents(SMALL)
    for doc in documents:
        if doc["kind"] == "Job":
            doc["metadata"]["annotations"]["kubesim.meshplane.io/fail"] = "CrashLoopBackOff"
    plan = make_plan(documents, timeout=2.0)
    sink = Recorder()

    with pytest.raises(ApplyError) as caught:
        await Applier(session).install_or_upgrade(plan, sink)

    assert caught.value.detail.code == "HOOK_FAILED"
    assert "CrashLoopBackOff" in caught.value.detail.message
    assert [e.reason for e in sink.of(ProgressKind.FAILED)] == ["CrashLoopBackOff"]


async def test_field_ownership_is_given_back_without_deleting(session: ClusterSession) -> None:
    await session.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "apps", "labels": {"team": "payments"}},
        },
        field_manager="kubectl",
    )
    label = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "apps", "labels": {"istio-injection": "enabled"}},
    }
    plan = make_plan(
        [label], release="inject-apps", namespace="default", ownership_fields_only=True
    )
    applier = Applier(session)

    await applier.install_or_upgrade(plan, Recorder())
    namespace = await session.get("v1", "Namespace", "apps")
    assert namespace is not None
    assert namespace["metadata"]["labels"]["istio-injection"] == "enabled"
    sink = Recorder()

    outcome = await applier.uninstall("inject-apps", "default", sink, mesh=MESH)

    assert outcome.deleted == 1
    assert sink.names(ProgressKind.DELETED) == ["Namespace/apps"]
    namespace = await session.get("v1", "Namespace", "apps")
    assert namespace is not None, "the namespace itself must survive"
    assert not namespace["metadata"].get("deletionTimestamp")
    labels = namespace["metadata"]["labels"]
    assert "istio-injection" not in labels
    assert labels["team"] == "payments"
    assert await read_inventory(session, "default", "inject-apps", mesh=MESH) is None


async def set_faults(sim: RunningSim, faults: dict[str, Any] | None) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{sim.url}/kubesim/faults"
        if faults is None:
            async with http.delete(url) as response:
                assert response.status == 200
        else:
            async with http.put(url, data=json.dumps(faults)) as response:
                assert response.status == 200, await response.text()


@pytest.mark.parametrize("code", [429, 503])
async def test_throttling_and_unavailability_are_retried(kubesim: RunningSim, code: int) -> None:
    retries: list[int] = []
    await set_faults(
        kubesim, {"error_rate": {"*": 0.25}, "error_code": code, "retry_after": 0, "seed": 11}
    )
    try:
        async with await ClusterSession.connect(
            kubeconfig_path=kubesim.kubeconfig, on_retry=lambda: retries.append(1)
        ) as session:
            plan = make_plan(load_documents(SMALL))
            outcome = await Applier(session).install_or_upgrade(plan, Recorder())
            await set_faults(kubesim, None)
            record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    finally:
        await set_faults(kubesim, None)
    assert outcome.applied == len(plan.objects)
    assert record is not None and record.status is ReleaseState.DEPLOYED
    assert len(retries) >= 3


async def test_cancelled_install_stays_pending_and_resumes(session: ClusterSession) -> None:
    plan = make_plan(load_documents(SMALL))
    applier = Applier(session)
    first_config = asyncio.Event()

    def sink(progress: Progress) -> None:
        if progress.kind is ProgressKind.APPLIED and progress.ref.kind == "ConfigMap":
            first_config.set()

    task = asyncio.create_task(applier.install_or_upgrade(plan, sink), name="install-to-cancel")
    await asyncio.wait_for(first_config.wait(), timeout=20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None
    assert record.status is ReleaseState.PENDING_INSTALL
    assert record.objects == plan.refs

    recorder = Recorder()
    outcome = await applier.install_or_upgrade(plan, recorder)

    assert not outcome.noop
    assert outcome.applied + outcome.unchanged == len(plan.objects)
    assert outcome.unchanged >= 1
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None
    assert record.status is ReleaseState.DEPLOYED
    assert record.revision == 1
    for ref in plan.refs:
        assert await session.get_ref(ref) is not None


async def test_cancelled_upgrade_resumes_and_still_prunes(session: ClusterSession) -> None:
    documents = load_documents(SMALL)
    applier = Applier(session)
    await applier.install_or_upgrade(make_plan(documents), Recorder())
    smaller = make_plan([d for d in documents if d["kind"] != "Role"])
    started = asyncio.Event()

    def sink(progress: Progress) -> None:
        started.set()

    task = asyncio.create_task(applier.install_or_upgrade(smaller, sink), name="upgrade-to-cancel")
    await asyncio.wait_for(started.wait(), timeout=20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None and record.status is ReleaseState.PENDING_UPGRADE

    recorder = Recorder()
    await applier.install_or_upgrade(smaller, recorder)

    assert recorder.names(ProgressKind.PRUNED) == ["Role/web-reader"]
    record = await read_inventory(session, NAMESPACE, RELEASE, mesh=MESH)
    assert record is not None
    assert record.status is ReleaseState.DEPLOYED
    assert record.revision == 2


async def _istio_plan(chart_dir: Path, version: str, *, upgrade: bool = False) -> ApplyPlan:
    from adapters.kit.plan.rendering import render_chart

    objects: list[KubeObject] = []
    hooks: list[Hook] = []
    keep: set[str] = set()
    for chart, release in (("base", "istio-base"), ("istiod", "istiod")):
        rendered = await render_chart(
            chart_dir / f"{chart}-{version}.tgz",
            release_name=release,
            namespace="istio-system",
            is_install=not upgrade,
            is_upgrade=upgrade,
        )
        objects += rendered.objects
        keep |= rendered.kept_keys
        hooks += [
            Hook(
                manifest=hook.object,
                phases=tuple(HookPhase(event) for event in sorted(hook.events)),
                weight=hook.weight,
                delete_policies=hook.delete_policies,
            )
            for hook in rendered.hooks
        ]
    return ApplyPlan(
        release="istio",
        namespace="istio-system",
        mesh="istio",
        objects=tuple(sort_for_install(objects)),
        hooks=tuple(hooks),
        keep=frozenset(keep),
        metadata={"mesh_version": version},
        wait_policy=WaitPolicy(timeout_seconds=30, poll_interval_seconds=0.1),
        create_namespaces=True,
    )


async def test_istio_charts_install_upgrade_uninstall(session: ClusterSession) -> None:
    charts = shared_fixtures() / "charts" / "istio"
    install = await _istio_plan(charts, "1.29.6")
    applier = Applier(session)
    sink = Recorder()

    outcome = await applier.install_or_upgrade(install, sink)

    crds = [ref for ref in install.refs if ref.kind == "CustomResourceDefinition"]
    assert len(crds) >= 10
    assert outcome.applied == len(install.objects)
    assert "Deployment/istiod" in sink.names(ProgressKind.READY)
    assert (await applier.install_or_upgrade(install, Recorder())).noop

    upgrade = await _istio_plan(charts, "1.30.3", upgrade=True)
    sink = Recorder()
    outcome = await applier.install_or_upgrade(upgrade, sink)
    assert outcome.applied >= 1
    record = await read_inventory(session, "istio-system", "istio", mesh="istio")
    assert record is not None
    assert record.revision == 2
    assert record.metadata["mesh_version"] == "1.30.3"
    dropped = {ref.key for ref in install.refs} - {ref.key for ref in upgrade.refs}
    pruned_or_kept = {
        e.ref.key for e in sink.events if e.kind in (ProgressKind.PRUNED, ProgressKind.KEPT)
    }
    assert pruned_or_kept == dropped

    sink = Recorder()
    await applier.uninstall("istio", "istio-system", sink, mesh="istio")
    leftovers = [
        obj["metadata"]["name"]
        for obj in await session.list(
            "apps/v1", "Deployment", label_selector=f"{RELEASE_LABEL}=istio"
        )
    ]
    assert leftovers == []
    assert await read_inventory(session, "istio-system", "istio", mesh="istio") is None
    kept = {e.ref.key for e in sink.of(ProgressKind.KEPT)}
    assert kept == {ref.key for ref in upgrade.refs if ref.key in upgrade.keep}


async def test_a_rejected_object_fails_the_install_with_its_cause(session: ClusterSession) -> None:
    documents = load_documents(SMALL)
    for doc in documents:
        if doc["kind"] == "Service":
            doc["spec"]["type"] = "Sideways"
    sink = Recorder()

    with pytest.raises(ApplyError) as caught:
        await Applier(session).install_or_upgrade(make_plan(documents), sink)

    assert caught.value.detail.code == "KUBE_INVALID"
    assert "spec.type" in caught.value.detail.probable_cause
    failed = sink.of(ProgressKind.FAILED)
    assert [(e.ref.kind, e.reason) for e in failed] == [("Service", "KUBE_INVALID")]


async def test_pre_install_hook_pod_runs_to_completion_first(session: ClusterSession) -> None:
    check = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "preflight",
            "namespace": NAMESPACE,
            "annotations": {
                "helm.sh/hook": "pre-install",
                "helm.sh/hook-delete-policy": "hook-succeeded",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "check", "image": "registry.example/preflight:1"}],
        },
    }
    documents = [d for d in load_documents(SMALL) if d["kind"] != "Job"]
    sink = Recorder()

    await Applier(session).install_or_upgrade(make_plan([*documents, check]), sink)

    order = [(e.kind, f"{e.ref.kind}/{e.ref.name}") for e in sink.events]
    completed = order.index((ProgressKind.HOOK_COMPLETED, "Pod/preflight"))
    assert completed < order.index((ProgressKind.APPLIED, "ConfigMap/web-config"))
    assert order.index((ProgressKind.APPLIED, "Namespace/shop")) < completed
    assert await session.get("v1", "Pod", "preflight", NAMESPACE) is None


def _step(recorder: Recorder, kind: ProgressKind, object_kind: str) -> int:
    """Position of the first ``kind`` step about an object of ``object_kind``."""
    return next(
        index
        for index, event in enumerate(recorder.events)
        if event.kind is kind and event.ref.kind == object_kind
    )


async def test_crds_are_established_before_custom_resources_are_applied(
    session: ClusterSession,
) -> None:
    recorder = Recorder()
    await Applier(session).install_or_upgrade(make_plan(load_documents(SMALL)), recorder)
    crd_ready = _step(recorder, ProgressKind.READY, "CustomResourceDefinition")
    assert crd_ready < _step(recorder, ProgressKind.APPLIED, "ConfigMap")
    assert crd_ready < _step(recorder, ProgressKind.APPLIED, "Widget")


async def test_without_custom_resources_crds_are_waited_for_with_the_workloads(
    session: ClusterSession,
) -> None:
    # Nothing in the plan needs the CRD served, so the rest is applied without waiting for
    # Established (a busy API server takes seconds per CRD); the install still waits for it.
    documents = [doc for doc in load_documents(SMALL) if doc["kind"] != "Widget"]
    recorder = Recorder()
    outcome = await Applier(session).install_or_upgrade(make_plan(documents), recorder)
    crd_ready = _step(recorder, ProgressKind.READY, "CustomResourceDefinition")
    assert crd_ready > _step(recorder, ProgressKind.APPLIED, "ConfigMap")
    assert crd_ready > _step(recorder, ProgressKind.APPLIED, "Deployment")
    assert "CustomResourceDefinition/widgets.example.meshplane.io" in recorder.names(
        ProgressKind.READY
    )
    assert outcome.ready == len(recorder.of(ProgressKind.READY))
