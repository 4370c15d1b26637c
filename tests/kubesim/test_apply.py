"""Server-side apply through DynamicClient and the typed client."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client, dynamic, utils

from kubesim.harness import RunningSim
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import crd, create_crd, deployment, eventually, raw_request, status_of


@pytest.fixture
def deployments(api: client.ApiClient) -> Any:
    return dynamic.DynamicClient(api).resources.get(api_version="apps/v1", kind="Deployment")


def managers(obj: Any) -> dict[str, dict[str, Any]]:
    return {m["manager"]: m for m in obj.to_dict()["metadata"]["managedFields"]}


def test_apply_creates_and_tracks_managed_fields(deployments: Any, ns: str) -> None:
    body = deployment("web")
    made = deployments.server_side_apply(body=body, namespace=ns, field_manager="alice")
    assert made.metadata.generation == 1
    entry = managers(made)["alice"]
    assert entry["operation"] == "Apply" and entry["apiVersion"] == "apps/v1"
    fields = entry["fieldsV1"]
    assert "f:replicas" in fields["f:spec"]
    assert 'k:{"name":"main"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]
    # defaults are filled, and not owned
    assert made.spec.strategy.type == "RollingUpdate"
    assert "f:strategy" not in fields["f:spec"]


def test_reapply_is_a_no_op(deployments: Any, ns: str) -> None:
    body = deployment("same")
    deployments.server_side_apply(body=body, namespace=ns, field_manager="alice")

    def rolled_out() -> Any:  # the controllers' status writes are over
        current = deployments.get(name="same", namespace=ns)
        return (current.status.availableReplicas or 0) == 2 and current

    before = eventually(rolled_out, timeout=60)
    again = deployments.server_side_apply(body=body, namespace=ns, field_manager="alice")
    assert again.metadata.resourceVersion == before.metadata.resourceVersion
    assert before.metadata.generation == again.metadata.generation == 1
    assert managers(before)["alice"]["time"] == managers(again)["alice"]["time"]


def test_conflicts_and_force(deployments: Any, ns: str) -> None:
    deployments.server_side_apply(
        body=deployment("c", replicas=2), namespace=ns, field_manager="alice"
    )
    with pytest.raises(client.ApiException) as exc:
        deployments.server_side_apply(
            body=deployment("c", replicas=5), namespace=ns, field_manager="bob"
        )
    status = status_of(exc.value)
    assert exc.value.status == 409 and status["reason"] == "Conflict"
    assert status["details"]["causes"][0] == {
        "reason": "FieldManagerConflict",
        "message": 'conflict with "alice"',
        "field": ".spec.replicas",
    }
    # same value: shared ownership, no conflict
    deployments.server_side_apply(
        body=deployment("c", replicas=2), namespace=ns, field_manager="bob"
    )
    forced = deployments.server_side_apply(
        body=deployment("c", replicas=5),
        namespace=ns,
        field_manager="bob",
        force_conflicts=True,
    )
    assert forced.spec.replicas == 5
    owners = managers(forced)
    assert "f:replicas" not in owners["alice"]["fieldsV1"]["f:spec"]
    assert "f:replicas" in owners["bob"]["fieldsV1"]["f:spec"]


def test_fields_a_manager_stops_applying_are_removed(deployments: Any, ns: str) -> None:
    body = deployment("r")
    body["metadata"]["labels"]["extra"] = "yes"
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "b:1"})
    deployments.server_side_apply(body=body, namespace=ns, field_manager="alice")
    smaller = deployment("r")
    after = deployments.server_side_apply(body=smaller, namespace=ns, field_manager="alice")
    assert after.to_dict()["metadata"]["labels"] == {"app": "r"}
    assert [c.name for c in after.spec.template.spec.containers] == ["main"]


def test_field_owned_by_another_manager_survives(deployments: Any, ns: str) -> None:
    body = deployment("s")
    body["metadata"]["labels"]["shared"] = "1"
    deployments.server_side_apply(body=body, namespace=ns, field_manager="alice")
    deployments.server_side_apply(body=copy.deepcopy(body), namespace=ns, field_manager="bob")
    after = deployments.server_side_apply(body=deployment("s"), namespace=ns, field_manager="alice")
    assert after.metadata.labels["shared"] == "1"


def test_update_operations_take_ownership(api: client.ApiClient, deployments: Any, ns: str) -> None:
    deployments.server_side_apply(
        body=deployment("u", replicas=2), namespace=ns, field_manager="alice"
    )
    apps = client.AppsV1Api(api)
    apps.patch_namespaced_deployment("u", ns, {"spec": {"replicas": 3}}, field_manager="scaler")
    owners = managers(deployments.get(name="u", namespace=ns))
    assert owners["scaler"]["operation"] == "Update"
    assert "f:replicas" in owners["scaler"]["fieldsV1"]["f:spec"]
    with pytest.raises(client.ApiException) as exc:
        deployments.server_side_apply(
            body=deployment("u", replicas=2), namespace=ns, field_manager="alice"
        )
    assert status_of(exc.value)["details"]["causes"][0]["message"].startswith(
        'conflict with "scaler"'
    )


APPLY = "application/apply-patch+yaml"


def test_apply_needs_field_manager(server: ApiServer, ns: str) -> None:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    code, status = raw_request(
        server, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/x", body, content_type=APPLY
    )
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
        "is required for apply patch"
    )
    code, status = raw_request(
        server,
        "PATCH",
        f"/api/v1/namespaces/{ns}/configmaps/x",
        {"metadata": {"name": "x"}},
        content_type=APPLY,
        query={"fieldManager": "m"},
    )
    assert (code, status["message"]) == (400, "invalid object type: /, Kind=")


def test_an_applied_configuration_with_managed_fields_is_refused(
    server: ApiServer, ns: str
) -> None:
    """As the real API server: an object read back must lose managedFields before an apply."""
    path = f"/api/v1/namespaces/{ns}/configmaps/read-back"
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "read-back"},
        "data": {"a": "b"},
    }
    query = {"fieldManager": "m"}
    code, _ = raw_request(server, "PATCH", path, body, content_type=APPLY, query=query)
    assert code == 201
    code, read = raw_request(server, "GET", path)
    assert code == 200 and read["metadata"]["managedFields"]
    code, status = raw_request(server, "PATCH", path, read, content_type=APPLY, query=query)
    assert (code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == "metadata.managedFields must be nil"


def test_apply_yaml_body_and_dry_run(server: ApiServer, api: client.ApiClient, ns: str) -> None:
    # (not the name "y": the real server's YAML reads a bare y as the boolean true)
    yaml_body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: yml\ndata:\n  a: '1'\n"
    path = f"/api/v1/namespaces/{ns}/configmaps/yml"
    code, made = raw_request(
        server,
        "PATCH",
        path,
        yaml_body,
        content_type=APPLY,
        query={"fieldManager": "m", "dryRun": "All"},
    )
    assert code == 201 and made["data"] == {"a": "1"}
    core = client.CoreV1Api(api)
    with pytest.raises(client.ApiException):
        core.read_namespaced_config_map("yml", ns)
    code, made = raw_request(
        server, "PATCH", path, yaml_body, content_type=APPLY, query={"fieldManager": "m"}
    )
    assert code == 201
    assert core.read_namespaced_config_map("yml", ns).data == {"a": "1"}
    code, again = raw_request(
        server, "PATCH", path, yaml_body, content_type=APPLY, query={"fieldManager": "m"}
    )
    assert code == 200
    assert again["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
    code, status = raw_request(server, "PATCH", path, b"{", content_type="application/foo")
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")


def test_create_from_yaml_apply_and_custom_resources(
    api: client.ApiClient, server: ApiServer, tmp_path: Any
) -> None:
    shop = server.unique("shop")
    manifest = tmp_path / "all.yaml"
    manifest.write_text(f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {shop}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {shop}}}
data: {{mode: fast}}
""")
    # the client puts namespaced objects under its `namespace` argument ("default" unless
    # given); a body naming another namespace is refused with 400, as a real apiserver does
    utils.create_from_yaml(api, str(manifest), apply=True, namespace=shop)
    utils.create_from_yaml(api, str(manifest), apply=True, namespace=shop)
    core = client.CoreV1Api(api)
    assert core.read_namespaced_config_map("settings", shop).data == {"mode": "fast"}
    create_crd(server, crd(group=server.group))
    dyn = dynamic.DynamicClient(api)
    widgets = dyn.resources.get(api_version=f"{server.group}/v1", kind="Widget")
    body = {
        "apiVersion": f"{server.group}/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": shop},
        "spec": {"sizes": [1, 2], "color": "red"},
        "status": {"ignored": True},
    }
    made = widgets.server_side_apply(body=body, field_manager="alice")
    assert made.to_dict()["spec"]["sizes"] == [1, 2] and made.metadata.generation == 1
    assert "status" not in made.to_dict()  # status subresource: main writes ignore it
    body["spec"]["sizes"] = [3]
    body["spec"].pop("color")
    after = widgets.server_side_apply(body=body, field_manager="alice")
    assert after.to_dict()["spec"] == {"sizes": [3]}
    assert after.metadata.generation == 2


def test_dry_run_writes_of_every_verb_change_nothing(
    server: ApiServer, api: client.ApiClient, ns: str
) -> None:
    """Apply (create and update), merge and strategic patches, create and delete with
    dryRun=All answer with what would be stored and store nothing."""
    core = client.CoreV1Api(api)
    dry = {"dryRun": "All"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s1"},
        "spec": {"ports": [{"port": 80}], "type": "NodePort"},
    }
    path = f"/api/v1/namespaces/{ns}/services/s1"
    code, planned = raw_request(
        server, "PATCH", path, service, content_type=APPLY, query={"fieldManager": "m", **dry}
    )
    assert code == 201 and planned["spec"]["clusterIP"] and planned["spec"]["ports"][0]["nodePort"]
    assert raw_request(server, "GET", path)[0] == 404

    core.create_namespaced_config_map(ns, {"metadata": {"name": "c"}, "data": {"a": "1"}})
    before = core.read_namespaced_config_map("c", ns)
    cm_path = f"/api/v1/namespaces/{ns}/configmaps/c"
    changed = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "2"},
    }
    code, answer = raw_request(
        server,
        "PATCH",
        cm_path,
        changed,
        content_type=APPLY,
        query={"fieldManager": "m", "force": "true", **dry},
    )
    assert (code, answer["data"]) == (200, {"a": "2"})
    for content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
        code, answer = raw_request(
            server, "PATCH", cm_path, {"data": {"a": "3"}}, content_type=content_type, query=dry
        )
        assert (code, answer["data"]) == (200, {"a": "3"})
    code, _ = raw_request(server, "DELETE", cm_path, query=dry)
    assert code == 200
    after = core.read_namespaced_config_map("c", ns)
    assert after.data == {"a": "1"}
    assert after.metadata.resource_version == before.metadata.resource_version


def test_a_dry_run_cluster_ip_is_not_reserved(kubesim: RunningSim) -> None:
    """kubesim only: it allocates cluster IPs and node ports in order, so the real Service
    after a dry run gets the same ones (the real server allocates at random)."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s1"},
        "spec": {"ports": [{"port": 80}], "type": "NodePort"},
    }
    path = "/api/v1/namespaces/default/services/s1"
    code, planned = raw_request(
        kubesim,
        "PATCH",
        path,
        service,
        content_type=APPLY,
        query={"fieldManager": "m", "dryRun": "All"},
    )
    assert code == 201
    code, made = raw_request(
        kubesim, "PATCH", path, service, content_type=APPLY, query={"fieldManager": "m"}
    )
    assert made["spec"]["clusterIP"] == planned["spec"]["clusterIP"]
    assert made["spec"]["ports"][0]["nodePort"] == planned["spec"]["ports"][0]["nodePort"]
