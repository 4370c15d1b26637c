"""Discovery documents, as the real client and its DynamicClient read them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client, dynamic, utils

from kubesim.harness import RunningSim
from kubesim.resources import version_priority
from tests.kubesim.support import crd, raw_request


def get_json(sim: RunningSim, path: str) -> Any:
    with urllib.request.urlopen(sim.url + path, timeout=10) as resp:
        return json.loads(resp.read())


def test_version_and_core_discovery(kubesim: RunningSim) -> None:
    assert get_json(kubesim, "/version")["major"] == "1"
    assert get_json(kubesim, "/api")["versions"] == ["v1"]
    core = get_json(kubesim, "/api/v1")
    assert core["kind"] == "APIResourceList"
    assert core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    for name in (
        "namespaces",
        "configmaps",
        "secrets",
        "services",
        "serviceaccounts",
        "pods",
        "endpoints",
        "events",
        "pods/status",
        "namespaces/status",
    ):
        assert name in by_name, name
    pods = by_name["pods"]
    assert pods["singularName"] == "pod"
    assert pods["namespaced"] is True
    assert pods["kind"] == "Pod"
    assert "po" in pods["shortNames"]
    assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(pods["verbs"])
    assert by_name["namespaces"]["namespaced"] is False


def test_group_discovery(kubesim: RunningSim) -> None:
    groups = get_json(kubesim, "/apis")
    assert groups["kind"] == "APIGroupList"
    by_name = {g["name"]: g for g in groups["groups"]}
    expected = {
        "apps": "apps/v1",
        "batch": "batch/v1",
        "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
        "admissionregistration.k8s.io": "admissionregistration.k8s.io/v1",
        "apiextensions.k8s.io": "apiextensions.k8s.io/v1",
        "policy": "policy/v1",
        "autoscaling": "autoscaling/v2",
        "networking.k8s.io": "networking.k8s.io/v1",
        "discovery.k8s.io": "discovery.k8s.io/v1",
        "coordination.k8s.io": "coordination.k8s.io/v1",
    }
    for name, gv in expected.items():
        assert by_name[name]["preferredVersion"]["groupVersion"] == gv
    apps = get_json(kubesim, "/apis/apps/v1")
    assert apps["groupVersion"] == "apps/v1"
    kinds = {r["name"]: r["kind"] for r in apps["resources"]}
    assert kinds["deployments"] == "Deployment"
    assert kinds["deployments/status"] == "Deployment"
    assert kinds["deployments/scale"] == "Scale"
    assert {"statefulsets", "daemonsets", "replicasets"} <= set(kinds)
    admission = {
        r["kind"] for r in get_json(kubesim, "/apis/admissionregistration.k8s.io/v1")["resources"]
    }
    assert {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= admission


def test_crd_kind_appears_and_disappears(kubesim: RunningSim, api_client: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(api_client)
    utils.create_from_dict(api_client, crd(versions=("v1", "v1beta1")), apply=True)
    ext = client.ApiextensionsV1Api(api_client)
    created = ext.read_custom_resource_definition("widgets.example.com")
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert created.status.stored_versions == ["v1"]
    # at once, each served version
    for version in ("v1", "v1beta1"):
        listing = get_json(kubesim, f"/apis/example.com/{version}")
        assert listing["groupVersion"] == f"example.com/{version}"
        assert {r["name"] for r in listing["resources"]} == {"widgets", "widgets/status"}
    group = next(g for g in get_json(kubesim, "/apis")["groups"] if g["name"] == "example.com")
    assert group["preferredVersion"]["version"] == "v1"
    widgets = dyn.resources.get(api_version="example.com/v1", kind="Widget")
    widgets.create(
        body={
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 1},
        },
        namespace="default",
    )
    beta = dyn.resources.get(api_version="example.com/v1beta1", kind="Widget")
    assert beta.get(name="w1", namespace="default").apiVersion == "example.com/v1beta1"
    ext.delete_custom_resource_definition("widgets.example.com")
    groups = {g["name"] for g in get_json(kubesim, "/apis")["groups"]}
    assert "example.com" not in groups
    # the objects went with it: re-creating the CRD finds none
    utils.create_from_dict(api_client, crd(), apply=True)
    assert widgets.get(namespace="default").items == []


def test_dynamic_client_lists_everything(api_client: client.ApiClient) -> None:
    dyn = dynamic.DynamicClient(api_client)
    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    names = {n.metadata.name for n in namespaces.get().items}
    assert {"default", "kube-system", "kube-public"} <= names
    for api_version, kind in (
        ("apps/v1", "Deployment"),
        ("batch/v1", "CronJob"),
        ("policy/v1", "PodDisruptionBudget"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("coordination.k8s.io/v1", "Lease"),
        ("discovery.k8s.io/v1", "EndpointSlice"),
    ):
        resource = dyn.resources.get(api_version=api_version, kind=kind)
        listing = resource.get()
        assert listing.kind == f"{kind}List"
        assert listing.metadata.resourceVersion


def test_tables_for_kubectl_get(kubesim: RunningSim, api_client: client.ApiClient) -> None:
    client.CoreV1Api(api_client).create_namespaced_service(
        "default",
        {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}},
    )
    request = urllib.request.Request(
        kubesim.url + "/api/v1/namespaces/default/services?fieldSelector=metadata.name%3Dsvc",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        table = json.loads(resp.read())
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    row = table["rows"][0]
    assert row["cells"][:2] == ["svc", "ClusterIP"]
    assert row["cells"][4] == "80/TCP"
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_crd_group_prefers_by_version_priority(
    kubesim: RunningSim, api_client: client.ApiClient
) -> None:
    # Listed alpha first, and spread over two CRDs registered alpha-only first: the apiserver
    # still orders the group by version priority, so v1 is preferred in /apis and /apis/G.
    utils.create_from_dict(api_client, crd("gadgets", versions=("v1alpha2",)), apply=True)
    utils.create_from_dict(api_client, crd(versions=("v1alpha2", "v1beta1", "v1")), apply=True)
    expected = ["v1", "v1beta1", "v1alpha2"]
    group = next(g for g in get_json(kubesim, "/apis")["groups"] if g["name"] == "example.com")
    assert [v["version"] for v in group["versions"]] == expected
    assert group["preferredVersion"] == {"groupVersion": "example.com/v1", "version": "v1"}
    single = get_json(kubesim, "/apis/example.com")
    assert [v["version"] for v in single["versions"]] == expected
    assert single["preferredVersion"]["version"] == "v1"
    # the client's discovery picks the same one
    dyn = dynamic.DynamicClient(api_client)
    assert dyn.resources.get(group="example.com", kind="Widget", preferred=True).api_version == "v1"


def test_version_priority_order() -> None:
    names = ["v10beta3", "v2", "foo10", "v1", "v3beta1", "v11alpha2", "v11beta2"]
    names += ["v12alpha1", "foo1", "v10", "v1beta"]
    assert sorted(names, key=version_priority) == [
        "v10",
        "v2",
        "v1",
        "v11beta2",
        "v10beta3",
        "v3beta1",
        "v12alpha1",
        "v11alpha2",
        "foo1",
        "foo10",
        "v1beta",
    ]


def test_policy_v1beta1_is_gone_at_1_34(kubesim: RunningSim) -> None:
    # PodDisruptionBudget policy/v1beta1 was removed in Kubernetes 1.25.
    version = get_json(kubesim, "/version")
    assert (version["major"], version["minor"]) == ("1", "34")
    status, body = raw_request(kubesim, "GET", "/apis/policy/v1beta1")
    assert status == 404, body
    assert [v["version"] for v in get_json(kubesim, "/apis/policy")["versions"]] == ["v1"]
    pdb = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "old"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
    }
    path = "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets"
    assert raw_request(kubesim, "POST", path, pdb)[0] == 404


KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


def get_aggregated(
    sim: RunningSim, path: str, accept: str = KUBECTL_ACCEPT, etag: str = ""
) -> tuple[int, dict[str, str], Any]:
    """GET with an Accept header: (status, headers, JSON body or None for 304)."""
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(sim.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return 304, dict(err.headers), None
        raise


def _aggregated_kinds(document: Any) -> dict[str, set[tuple[str, str, bool]]]:
    """group/version -> {(plural, kind, namespaced)} from an APIGroupDiscoveryList."""
    found: dict[str, set[tuple[str, str, bool]]] = {}
    for group in document["items"]:
        name = group["metadata"]["name"]
        for version in group["versions"]:
            gv = f"{name}/{version['version']}" if name else version["version"]
            found[gv] = {
                (r["resource"], r["responseKind"]["kind"], r["scope"] == "Namespaced")
                for r in version["resources"]
            }
    return found


def _legacy_kinds(sim: RunningSim, gv: str) -> set[tuple[str, str, bool]]:
    path = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
    return {
        (r["name"], r["kind"], r["namespaced"])
        for r in get_json(sim, path)["resources"]
        if "/" not in r["name"]
    }


def test_aggregated_discovery_matches_the_per_group_version_documents(
    kubesim: RunningSim,
) -> None:
    status, headers, core = get_aggregated(kubesim, "/api")
    assert status == 200
    assert headers["Content-Type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert core["kind"] == "APIGroupDiscoveryList"
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2"
    _, _, named = get_aggregated(kubesim, "/apis")
    kinds = {**_aggregated_kinds(core), **_aggregated_kinds(named)}
    legacy_versions = ["v1"] + [
        v["groupVersion"] for g in get_json(kubesim, "/apis")["groups"] for v in g["versions"]
    ]
    assert sorted(kinds) == sorted(legacy_versions)
    for gv in legacy_versions:
        assert kinds[gv] == _legacy_kinds(kubesim, gv), gv
    # Preferred version first, as /apis lists it; subresources carry their own kind.
    groups = {g["metadata"]["name"]: g for g in named["items"]}
    legacy = {g["name"]: g for g in get_json(kubesim, "/apis")["groups"]}
    for name, group in groups.items():
        assert group["versions"][0]["version"] == legacy[name]["preferredVersion"]["version"]
    apps = {r["resource"]: r for r in groups["apps"]["versions"][0]["resources"]}
    scale = {s["subresource"]: s for s in apps["deployments"]["subresources"]}["scale"]
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_aggregated_discovery_negotiation_and_etag(
    kubesim: RunningSim, api_client: client.ApiClient
) -> None:
    beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    _, headers, document = get_aggregated(kubesim, "/apis", accept=beta)
    assert document["apiVersion"] == "apidiscovery.k8s.io/v2beta1"
    # Plain JSON first (or only) means the legacy documents.
    _, _, legacy = get_aggregated(kubesim, "/apis", accept="application/json," + beta)
    assert legacy["kind"] == "APIGroupList"
    _, _, legacy = get_aggregated(kubesim, "/api", accept="application/json")
    assert legacy["kind"] == "APIVersions"

    status, headers, _ = get_aggregated(kubesim, "/apis")
    etag = headers["ETag"]
    assert headers["Vary"] == "Accept"
    status, _, body = get_aggregated(kubesim, "/apis", etag=etag)
    assert (status, body) == (304, None)
    # A new CRD changes the document: a full answer with the new group.
    utils.create_from_dict(api_client, crd(), apply=True)
    status, headers, document = get_aggregated(kubesim, "/apis", etag=etag)
    assert status == 200 and headers["ETag"] != etag
    assert "example.com" in {g["metadata"]["name"] for g in document["items"]}
