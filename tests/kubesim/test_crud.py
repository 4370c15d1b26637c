"""CRUD through the typed client: metadata, preconditions, patches, errors, namespaces."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from tests.kubesim.support import deployment, eventually, status_of


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


def test_create_sets_metadata_and_generate_name(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    second = core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    assert first.metadata.name.startswith("cfg-") and len(first.metadata.name) == 9
    assert first.metadata.name != second.metadata.name
    assert first.metadata.uid and first.metadata.creation_timestamp
    assert first.metadata.namespace == "default"
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.kind == "ConfigMap" and first.api_version == "v1"
    listing = core.list_namespaced_config_map("default")
    assert listing.kind == "ConfigMapList"
    assert int(listing.metadata.resource_version) >= int(second.metadata.resource_version)


def test_already_exists_not_found_and_missing_namespace(core: client.CoreV1Api) -> None:
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert core.read_namespaced_secret("s", "default").data == {"k": "dg=="}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_secret("default", {"metadata": {"name": "s"}})
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_secret("nope", "default")
    status = status_of(exc.value)
    assert (exc.value.status, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'secrets "nope" not found'
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "c"}})
    assert exc.value.status == 404
    assert status_of(exc.value)["message"] == 'namespaces "ghost" not found'


def test_create_refuses_a_resource_version(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": "rv", "resourceVersion": "5"}}
        )
    assert exc.value.status == 400
    assert status_of(exc.value)["message"] == (
        "resourceVersion should not be set on objects to be created"
    )


def test_names_are_validated(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    status = status_of(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespace({"metadata": {"name": "a.b"}})  # a label, not a subdomain
    assert exc.value.status == 422
    bad = deployment("web")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(client.ApiException) as exc:
        apps.create_namespaced_deployment("default", bad)
    assert exc.value.status == 422
    assert "selector" in status_of(exc.value)["message"]


def test_annotations_are_limited_to_256_kib(core: client.CoreV1Api) -> None:
    big = {"metadata": {"name": "big", "annotations": {"a": "x" * (256 * 1024)}}}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("default", big)
    assert exc.value.status == 422
    assert "Too long: must have at most 262144 bytes" in status_of(exc.value)["message"]


def test_put_with_stale_resource_version_conflicts(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c"}, "data": {}})
    cm.data = {"x": "1"}
    updated = core.replace_namespaced_config_map("c", "default", cm)
    assert updated.data == {"x": "1"}
    assert updated.metadata.resource_version != cm.metadata.resource_version
    cm.data = {"x": "2"}  # still carries the old resourceVersion
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("c", "default", cm)
    assert exc.value.status == 409
    assert status_of(exc.value)["reason"] == "Conflict"
    # a write that changes nothing keeps the resourceVersion
    same = core.replace_namespaced_config_map("c", "default", updated)
    assert same.metadata.resource_version == updated.metadata.resource_version


def test_generation_bumps_on_spec_change_only(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("gen"))
    apps.patch_namespaced_deployment("gen", "default", {"metadata": {"labels": {"x": "y"}}})
    assert apps.read_namespaced_deployment("gen", "default").metadata.generation == 1
    apps.patch_namespaced_deployment("gen", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("gen", "default").metadata.generation == 2


def test_patch_types(api_client: client.ApiClient, apps: client.AppsV1Api) -> None:
    body = deployment("p")
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1"})
    apps.create_namespaced_deployment("default", body)
    # strategic merge: containers merge by name; $setElementOrder is honoured, never stored
    smp = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "side"}, {"name": "main"}],
                    "containers": [
                        {"name": "main", "image": "nginx:2", "env": [{"name": "A", "value": "1"}]}
                    ],
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("p", "default", smp)
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["side", "main"]
    assert containers[1].image == "nginx:2" and containers[1].env[0].name == "A"
    assert containers[1].ports[0].container_port == 8080
    # $patch: delete removes one list item
    delete = {
        "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}
    }
    patched = apps.patch_namespaced_deployment("p", "default", delete)
    assert [c.name for c in patched.spec.template.spec.containers] == ["main"]
    # merge patch replaces lists whole
    api_client.set_default_header("Content-Type", "application/merge-patch+json")
    merge = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}},
    }
    patched = apps.patch_namespaced_deployment("p", "default", merge)
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]
    assert patched.metadata.labels == {"app": "p", "team": "a"}
    api_client.default_headers.pop("Content-Type")
    # JSON patch, including a failing test op
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/annotations", "value": {"a~b/c": "1"}},
    ]
    patched = apps.patch_namespaced_deployment("p", "default", ops)
    assert patched.spec.replicas == 5
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment(
            "p", "default", [{"op": "test", "path": "/spec/replicas", "value": 9}]
        )
    assert exc.value.status == 422


def test_strategic_merge_patch_is_refused_for_custom_resources(
    api_client: client.ApiClient,
) -> None:
    from kubernetes import utils

    from tests.kubesim.support import crd

    utils.create_from_dict(api_client, crd(), apply=True)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        "example.com",
        "v1",
        "default",
        "widgets",
        {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )
    api_client.set_default_header("Content-Type", "application/strategic-merge-patch+json")
    with pytest.raises(client.ApiException) as exc:
        custom.patch_namespaced_custom_object(
            "example.com", "v1", "default", "widgets", "w", {"spec": {"a": 1}}
        )
    assert exc.value.status == 415
    assert status_of(exc.value)["reason"] == "UnsupportedMediaType"
    api_client.default_headers.pop("Content-Type")


def test_dry_run_stores_nothing(core: client.CoreV1Api) -> None:
    before = core.list_namespaced_config_map("default").metadata.resource_version
    made = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "dry"}}, dry_run="All"
    )
    assert made.metadata.name == "dry" and made.metadata.uid
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("dry", "default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "real"}})
    core.delete_namespaced_config_map("real", "default", dry_run="All")
    assert core.read_namespaced_config_map("real", "default")
    assert (
        int(core.list_namespaced_config_map("default").metadata.resource_version) == int(before) + 1
    )


def test_selectors(core: client.CoreV1Api) -> None:
    for name, labels in (
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db"}),
        ("c", {"env": "dev"}),
    ):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kw: str) -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map("default", **kw).items
            if c.metadata.name in "abc"
        ]

    assert names(label_selector="tier=web") == ["a"]
    assert names(label_selector="tier==db") == ["b"]
    assert names(label_selector="tier!=web") == ["b", "c"]
    assert names(label_selector="tier in (web,db)") == ["a", "b"]
    assert names(label_selector="env notin (prod)") == ["b", "c"]
    assert names(label_selector="env") == ["a", "c"]
    assert names(label_selector="!env") == ["b"]
    assert names(label_selector="tier,env=prod") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    assert names(field_selector="metadata.namespace=default,metadata.name=c") == ["c"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.name=a")
    assert [c.metadata.namespace for c in everywhere.items] == ["default"]


def test_paging(core: client.CoreV1Api) -> None:
    for i in range(7):
        core.create_namespaced_config_map("kube-public", {"metadata": {"name": f"p{i}"}})
    page = core.list_namespaced_config_map("kube-public", limit=3)
    seen = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map(
            "kube-public", limit=3, _continue=page.metadata._continue
        )
        seen += [c.metadata.name for c in page.items]
    assert seen == [f"p{i}" for i in range(7)]


def test_system_namespaces_cannot_be_deleted(core: client.CoreV1Api) -> None:
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(client.ApiException) as exc:
            core.delete_namespace(name)
        assert exc.value.status == 403
        assert status_of(exc.value)["reason"] == "Forbidden"


def test_namespace_termination(core: client.CoreV1Api, apps: client.AppsV1Api) -> None:
    core.create_namespace({"metadata": {"name": "doomed"}})
    assert core.read_namespace("doomed").status.phase == "Active"
    core.create_namespaced_config_map(
        "doomed", {"metadata": {"name": "held", "finalizers": ["example.com/x"]}}
    )
    apps.create_namespaced_deployment("doomed", deployment("web"))
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert exc.value.status == 403 and status_of(exc.value)["reason"] == "Forbidden"
    eventually(lambda: not apps.list_namespaced_deployment("doomed").items)
    # the finalizer holds the config map, and so the namespace
    held = core.read_namespaced_config_map("held", "doomed")
    assert held.metadata.deletion_timestamp is not None
    assert core.read_namespace("doomed").status.phase == "Terminating"
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core.read_namespace("doomed")
        except client.ApiException as err:
            return err.status == 404
        return False

    eventually(gone)


def test_finalizers_hold_deletion(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "f", "finalizers": ["a/b"]}})
    core.delete_namespaced_config_map("f", "default")
    held = core.read_namespaced_config_map("f", "default")
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("f", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_config_map("f", "default")
    assert exc.value.status == 404


def test_owner_references_cascade(core: client.CoreV1Api) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "child", "ownerReferences": [ref]}}
    )
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "orphan", "ownerReferences": [ref]}}
    )
    core.delete_namespaced_config_map("owner", "default")

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", "default")
        except client.ApiException:
            return True
        return False

    eventually(child_gone)
    # orphan propagation drops the reference and keeps the dependent
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner2"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "kept", "ownerReferences": [ref]}}
    )
    core.delete_namespaced_config_map("owner2", "default", propagation_policy="Orphan")
    assert core.read_namespaced_config_map("kept", "default").metadata.owner_references is None


def test_foreground_deletion_waits_for_dependents(
    apps: client.AppsV1Api, core: client.CoreV1Api
) -> None:
    apps.create_namespaced_deployment("default", deployment("fg", replicas=1))
    (pod,) = eventually(lambda: core.list_namespaced_pod("default", label_selector="app=fg").items)
    # A finalizer of someone else's holds the pod, and so the whole foreground cascade.
    hold = "example.com/hold"
    core.patch_namespaced_pod(pod.metadata.name, "default", {"metadata": {"finalizers": [hold]}})
    apps.delete_namespaced_deployment("fg", "default", propagation_policy="Foreground")

    def pod_terminating() -> client.V1Pod | None:
        current = core.read_namespaced_pod(pod.metadata.name, "default")
        return current if current.metadata.deletion_timestamp else None

    held = eventually(pod_terminating)
    assert held.metadata.finalizers == [hold]
    # while its dependents exist, the owner stays, marked for deletion and waiting for them
    for _ in range(5):
        owner = apps.read_namespaced_deployment("fg", "default")
        assert owner.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in owner.metadata.finalizers
        (rs,) = apps.list_namespaced_replica_set("default").items
        assert rs.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in rs.metadata.finalizers
        time.sleep(0.1)
    core.patch_namespaced_pod(
        pod.metadata.name,
        "default",
        [{"op": "remove", "path": "/metadata/finalizers"}],
    )

    def all_gone() -> bool:
        return not (
            apps.list_namespaced_deployment("default").items
            or apps.list_namespaced_replica_set("default").items
            or core.list_namespaced_pod("default", label_selector="app=fg").items
        )

    eventually(all_gone)


def test_status_subresource(apps: client.AppsV1Api) -> None:
    apps.create_namespaced_deployment("default", deployment("st", replicas=0))
    current = apps.read_namespaced_deployment("st", "default")
    # writes to the main resource ignore status
    current.status = client.V1DeploymentStatus(replicas=42)
    after = apps.replace_namespaced_deployment("st", "default", current)
    assert after.status.replicas != 42
    status = apps.patch_namespaced_deployment_status(
        "st", "default", {"status": {"conditions": [{"type": "Custom", "status": "True"}]}}
    )
    assert status.status.conditions[-1].type == "Custom"
