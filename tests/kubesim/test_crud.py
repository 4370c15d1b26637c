"""CRUD through the typed client: metadata, preconditions, patches, errors, namespaces."""

from __future__ import annotations

import time

import pytest
from kubernetes import client, watch

from tests.kubesim.servers import ApiServer
from tests.kubesim.support import crd, create_crd, deployment, eventually, status_of


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def test_create_sets_metadata_and_generate_name(core: client.CoreV1Api, ns: str) -> None:
    first = core.create_namespaced_config_map(
        ns, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    second = core.create_namespaced_config_map(
        ns, {"metadata": {"generateName": "cfg-"}, "data": {"a": "1"}}
    )
    assert first.metadata.name.startswith("cfg-") and len(first.metadata.name) == 9
    assert first.metadata.name != second.metadata.name
    assert first.metadata.uid and first.metadata.creation_timestamp
    assert first.metadata.namespace == ns
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    assert first.kind == "ConfigMap" and first.api_version == "v1"
    listing = core.list_namespaced_config_map(ns)
    assert listing.kind == "ConfigMapList"
    assert int(listing.metadata.resource_version) >= int(second.metadata.resource_version)


def test_already_exists_not_found_and_missing_namespace(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert core.read_namespaced_secret("s", ns).data == {"k": "dg=="}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_secret(ns, {"metadata": {"name": "s"}})
    assert exc.value.status == 409 and status_of(exc.value)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_secret("nope", ns)
    status = status_of(exc.value)
    assert (exc.value.status, status["kind"], status["reason"]) == (404, "Status", "NotFound")
    assert status["message"] == 'secrets "nope" not found'
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map("ghost", {"metadata": {"name": "c"}})
    assert exc.value.status == 404
    assert status_of(exc.value)["message"] == 'namespaces "ghost" not found'


def test_create_refuses_a_resource_version(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "rv", "resourceVersion": "5"}})
    # a 500 without a reason: the real apiserver's storage layer refuses it so
    assert exc.value.status == 500
    status = status_of(exc.value)
    assert status["message"] == "resourceVersion should not be set on objects to be created"
    assert "reason" not in status


def test_names_are_validated(core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}})
    status = status_of(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespace({"metadata": {"name": "a.b"}})  # a label, not a subdomain
    assert exc.value.status == 422
    bad = deployment("web")
    bad["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    with pytest.raises(client.ApiException) as exc:
        apps.create_namespaced_deployment(ns, bad)
    assert exc.value.status == 422
    assert "selector" in status_of(exc.value)["message"]


def test_annotations_are_limited_to_256_kib(core: client.CoreV1Api, ns: str) -> None:
    big = {"metadata": {"name": "big", "annotations": {"a": "x" * (256 * 1024)}}}
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(ns, big)
    assert exc.value.status == 422
    assert status_of(exc.value)["message"] == (
        'ConfigMap "big" is invalid: metadata.annotations: '
        "Too long: may not be more than 262144 bytes"
    )


def test_put_with_stale_resource_version_conflicts(core: client.CoreV1Api, ns: str) -> None:
    cm = core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {}})
    cm.data = {"x": "1"}
    updated = core.replace_namespaced_config_map("c", ns, cm)
    assert updated.data == {"x": "1"}
    assert updated.metadata.resource_version != cm.metadata.resource_version
    cm.data = {"x": "2"}  # still carries the old resourceVersion
    with pytest.raises(client.ApiException) as exc:
        core.replace_namespaced_config_map("c", ns, cm)
    assert exc.value.status == 409
    assert status_of(exc.value)["reason"] == "Conflict"
    # a write that changes nothing keeps the resourceVersion
    same = core.replace_namespaced_config_map("c", ns, updated)
    assert same.metadata.resource_version == updated.metadata.resource_version


def test_generation_bumps_on_spec_change_only(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("gen"))
    apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"x": "y"}}})
    assert apps.read_namespaced_deployment("gen", ns).metadata.generation == 1
    apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("gen", ns).metadata.generation == 2


def test_patch_types(api: client.ApiClient, apps: client.AppsV1Api, ns: str) -> None:
    body = deployment("p")
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1"})
    apps.create_namespaced_deployment(ns, body)
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
    patched = apps.patch_namespaced_deployment("p", ns, smp)
    containers = patched.spec.template.spec.containers
    assert [c.name for c in containers] == ["side", "main"]
    assert containers[1].image == "nginx:2" and containers[1].env[0].name == "A"
    assert containers[1].ports[0].container_port == 8080
    # $patch: delete removes one list item
    delete = {
        "spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}
    }
    patched = apps.patch_namespaced_deployment("p", ns, delete)
    assert [c.name for c in patched.spec.template.spec.containers] == ["main"]
    # merge patch replaces lists whole
    api.set_default_header("Content-Type", "application/merge-patch+json")
    merge = {
        "metadata": {"labels": {"team": "a"}},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}},
    }
    patched = apps.patch_namespaced_deployment("p", ns, merge)
    assert [c.name for c in patched.spec.template.spec.containers] == ["only"]
    assert patched.metadata.labels == {"app": "p", "team": "a"}
    api.default_headers.pop("Content-Type")
    # JSON patch, including a failing test op
    ops = [
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/annotations", "value": {"example.com/a.b": "1"}},
        {"op": "replace", "path": "/metadata/annotations/example.com~1a.b", "value": "2"},
    ]
    patched = apps.patch_namespaced_deployment("p", ns, ops)
    assert patched.spec.replicas == 5
    assert patched.metadata.annotations == {"example.com/a.b": "2"}
    # an annotation's key is a qualified name: "~" is not allowed in its prefix
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment(
            "p", ns, [{"op": "add", "path": "/metadata/annotations/a~0b~1c", "value": "1"}]
        )
    assert exc.value.status == 422
    assert status_of(exc.value)["details"]["causes"][0]["field"] == "metadata.annotations"
    with pytest.raises(client.ApiException) as exc:
        apps.patch_namespaced_deployment(
            "p", ns, [{"op": "test", "path": "/spec/replicas", "value": 9}]
        )
    assert exc.value.status == 422


def test_strategic_merge_patch_is_refused_for_custom_resources(
    api: client.ApiClient, server: ApiServer, ns: str
) -> None:
    group = server.group
    create_crd(server, crd(group=group))
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        group,
        "v1",
        ns,
        "widgets",
        {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"}},
    )
    api.set_default_header("Content-Type", "application/strategic-merge-patch+json")
    with pytest.raises(client.ApiException) as exc:
        custom.patch_namespaced_custom_object(group, "v1", ns, "widgets", "w", {"spec": {"a": 1}})
    assert exc.value.status == 415
    assert status_of(exc.value)["reason"] == "UnsupportedMediaType"
    api.default_headers.pop("Content-Type")


def test_dry_run_stores_nothing(core: client.CoreV1Api, ns: str) -> None:
    before = core.list_namespaced_config_map(ns).metadata.resource_version
    made = core.create_namespaced_config_map(ns, {"metadata": {"name": "dry"}}, dry_run="All")
    # nothing was written: a watch from before sees no event for it
    assert made.metadata.name == "dry" and made.metadata.uid
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("dry", ns)
    real = core.create_namespaced_config_map(ns, {"metadata": {"name": "real"}})
    core.delete_namespaced_config_map("real", ns, dry_run="All")
    kept = core.read_namespaced_config_map("real", ns)
    assert kept.metadata.resource_version == real.metadata.resource_version
    assert kept.metadata.deletion_timestamp is None
    events = watch.Watch().stream(
        core.list_namespaced_config_map, ns, resource_version=before, timeout_seconds=1
    )
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "real")]


def test_selectors(core: client.CoreV1Api, ns: str) -> None:
    for name, labels in (
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db"}),
        ("c", {"env": "dev"}),
    ):
        core.create_namespaced_config_map(ns, {"metadata": {"name": name, "labels": labels}})

    def names(**kw: str) -> list[str]:
        return [
            c.metadata.name
            for c in core.list_namespaced_config_map(ns, **kw).items
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
    assert names(field_selector=f"metadata.namespace={ns},metadata.name=c") == ["c"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector="metadata.name=a")
    assert [c.metadata.namespace for c in everywhere.items] == [ns]


def test_paging(core: client.CoreV1Api, ns: str) -> None:
    for i in range(7):
        core.create_namespaced_config_map(ns, {"metadata": {"name": f"p{i}"}})
    page = core.list_namespaced_config_map(ns, limit=3)
    seen = [c.metadata.name for c in page.items]
    while page.metadata._continue:
        page = core.list_namespaced_config_map(ns, limit=3, _continue=page.metadata._continue)
        seen += [c.metadata.name for c in page.items]
    # (the real server also keeps a kube-root-ca.crt in every namespace)
    assert [name for name in seen if name != "kube-root-ca.crt"] == [f"p{i}" for i in range(7)]


def test_system_namespaces_cannot_be_deleted(core: client.CoreV1Api) -> None:
    for name in ("default", "kube-system", "kube-public"):
        with pytest.raises(client.ApiException) as exc:
            core.delete_namespace(name)
        assert exc.value.status == 403
        assert status_of(exc.value)["reason"] == "Forbidden"


def test_namespace_termination(
    core: client.CoreV1Api, apps: client.AppsV1Api, server: ApiServer
) -> None:
    doomed = server.unique("doomed")
    core.create_namespace({"metadata": {"name": doomed}})
    assert core.read_namespace(doomed).status.phase == "Active"
    core.create_namespaced_config_map(
        doomed, {"metadata": {"name": "held", "finalizers": ["example.com/x"]}}
    )
    apps.create_namespaced_deployment(doomed, deployment("web"))
    core.delete_namespace(doomed)
    namespace = core.read_namespace(doomed)
    assert namespace.status.phase == "Terminating"
    with pytest.raises(client.ApiException) as exc:
        core.create_namespaced_config_map(doomed, {"metadata": {"name": "late"}})
    assert exc.value.status == 403 and status_of(exc.value)["reason"] == "Forbidden"
    eventually(lambda: not apps.list_namespaced_deployment(doomed).items, timeout=60)
    # the finalizer holds the config map, and so the namespace
    held = eventually(
        lambda: (
            (cm := core.read_namespaced_config_map("held", doomed)).metadata.deletion_timestamp
            and cm
        ),
        timeout=60,
    )
    assert held.metadata.finalizers == ["example.com/x"]
    assert core.read_namespace(doomed).status.phase == "Terminating"
    core.patch_namespaced_config_map("held", doomed, {"metadata": {"finalizers": None}})

    def gone() -> bool:
        try:
            core.read_namespace(doomed)
        except client.ApiException as err:
            return err.status == 404
        return False

    eventually(gone, timeout=60)


def test_finalizers_hold_deletion(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, {"metadata": {"name": "f", "finalizers": ["a/b"]}})
    core.delete_namespaced_config_map("f", ns)
    held = core.read_namespaced_config_map("f", ns)
    assert held.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("f", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as exc:
        core.read_namespaced_config_map("f", ns)
    assert exc.value.status == 404


def test_owner_references_cascade(core: client.CoreV1Api, ns: str) -> None:
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "child", "ownerReferences": [ref]}})
    core.create_namespaced_secret(ns, {"metadata": {"name": "orphan", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner", ns)

    def child_gone() -> bool:
        try:
            core.read_namespaced_config_map("child", ns)
        except client.ApiException:
            return True
        return False

    eventually(child_gone)
    # orphan propagation drops the reference and keeps the dependent
    owner = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner2"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner2", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(ns, {"metadata": {"name": "kept", "ownerReferences": [ref]}})
    core.delete_namespaced_config_map("owner2", ns, propagation_policy="Orphan")
    # (the real garbage collector drops it a moment later; kubesim at once)
    eventually(
        lambda: core.read_namespaced_config_map("kept", ns).metadata.owner_references is None
    )


def test_foreground_deletion_waits_for_dependents(
    apps: client.AppsV1Api, core: client.CoreV1Api, ns: str
) -> None:
    apps.create_namespaced_deployment(ns, deployment("fg", replicas=1))
    (pod,) = eventually(lambda: core.list_namespaced_pod(ns, label_selector="app=fg").items)
    # A finalizer of someone else's holds the pod, and so the whole foreground cascade.
    hold = "example.com/hold"
    core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": [hold]}})
    apps.delete_namespaced_deployment("fg", ns, propagation_policy="Foreground")

    def pod_terminating() -> client.V1Pod | None:
        current = core.read_namespaced_pod(pod.metadata.name, ns)
        return current if current.metadata.deletion_timestamp else None

    held = eventually(pod_terminating)
    assert held.metadata.finalizers == [hold]
    # while its dependents exist, the owner stays, marked for deletion and waiting for them
    for _ in range(5):
        owner = apps.read_namespaced_deployment("fg", ns)
        assert owner.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in owner.metadata.finalizers
        (rs,) = apps.list_namespaced_replica_set(ns).items
        assert rs.metadata.deletion_timestamp is not None
        assert "foregroundDeletion" in rs.metadata.finalizers
        time.sleep(0.1)
    core.patch_namespaced_pod(
        pod.metadata.name,
        ns,
        [{"op": "remove", "path": "/metadata/finalizers"}],
    )

    def all_gone() -> bool:
        return not (
            apps.list_namespaced_deployment(ns).items
            or apps.list_namespaced_replica_set(ns).items
            or core.list_namespaced_pod(ns, label_selector="app=fg").items
        )

    eventually(all_gone)


def test_status_subresource(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("st", replicas=0))

    def replace_with_status() -> client.V1Deployment | None:
        current = apps.read_namespaced_deployment("st", ns)
        current.status = client.V1DeploymentStatus(replicas=42)
        try:
            return apps.replace_namespaced_deployment("st", ns, current)
        except client.ApiException as err:  # the controller wrote its status meanwhile
            if err.status == 409:
                return None
            raise

    # writes to the main resource ignore status
    after = eventually(replace_with_status)
    assert after.status.replicas != 42
    status = apps.patch_namespaced_deployment_status(
        "st", ns, {"status": {"conditions": [{"type": "Custom", "status": "True"}]}}
    )
    # a strategic merge puts the patch's items before those only the server had
    assert status.status.conditions[0].type == "Custom"
