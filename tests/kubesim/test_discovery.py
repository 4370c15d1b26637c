"""Discovery documents, as the real client and its DynamicClient read them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from kubernetes import client, dynamic

from kubesim.resources import version_priority
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import (
    CRDS,
    crd,
    create_crd,
    eventually,
    get_json,
    raw_request,
    ssl_context,
)


def test_version_and_core_discovery(server: ApiServer) -> None:
    assert get_json(server, "/version")["major"] == "1"
    assert get_json(server, "/api")["versions"] == ["v1"]
    core = get_json(server, "/api/v1")
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


def test_group_discovery(server: ApiServer) -> None:
    groups = get_json(server, "/apis")
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
    apps = get_json(server, "/apis/apps/v1")
    assert apps["groupVersion"] == "apps/v1"
    kinds = {r["name"]: r["kind"] for r in apps["resources"]}
    assert kinds["deployments"] == "Deployment"
    assert kinds["deployments/status"] == "Deployment"
    assert kinds["deployments/scale"] == "Scale"
    assert {"statefulsets", "daemonsets", "replicasets"} <= set(kinds)
    admission = {
        r["kind"] for r in get_json(server, "/apis/admissionregistration.k8s.io/v1")["resources"]
    }
    assert {
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    } <= admission


def test_crd_kind_appears_and_disappears(server: ApiServer, api: client.ApiClient, ns: str) -> None:
    group = server.group
    dyn = dynamic.DynamicClient(api)
    create_crd(server, crd(group=group, versions=("v1", "v1beta1")))
    ext = client.ApiextensionsV1Api(api)
    created = ext.read_custom_resource_definition(f"widgets.{group}")
    conditions = {c.type: c.status for c in created.status.conditions}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert created.status.stored_versions == ["v1"]
    # at once, each served version
    for version in ("v1", "v1beta1"):
        listing = get_json(server, f"/apis/{group}/{version}")
        assert listing["groupVersion"] == f"{group}/{version}"
        assert {r["name"] for r in listing["resources"]} == {"widgets", "widgets/status"}
    found = next(g for g in get_json(server, "/apis")["groups"] if g["name"] == group)
    assert found["preferredVersion"]["version"] == "v1"
    widgets = dyn.resources.get(api_version=f"{group}/v1", kind="Widget")
    widgets.create(
        body={
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 1},
        },
        namespace=ns,
    )
    beta = dyn.resources.get(api_version=f"{group}/v1beta1", kind="Widget")
    assert beta.get(name="w1", namespace=ns).apiVersion == f"{group}/v1beta1"
    ext.delete_custom_resource_definition(f"widgets.{group}")

    def group_gone() -> bool:  # (the real server removes it once the CRD's cleanup is over)
        groups = {g["name"] for g in get_json(server, "/apis")["groups"]}
        return (
            group not in groups and raw_request(server, "GET", f"{CRDS}/widgets.{group}")[0] == 404
        )

    eventually(group_gone, timeout=60)
    # the objects went with it: re-creating the CRD finds none
    create_crd(server, crd(group=group))
    assert widgets.get(namespace=ns).items == []


def test_dynamic_client_lists_everything(api: client.ApiClient, ns: str) -> None:
    dyn = dynamic.DynamicClient(api)
    namespaces = dyn.resources.get(api_version="v1", kind="Namespace")
    names = {n.metadata.name for n in namespaces.get().items}
    assert {ns, "default", "kube-system", "kube-public"} <= names
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


def test_tables_for_kubectl_get(server: ApiServer, api: client.ApiClient, ns: str) -> None:
    client.CoreV1Api(api).create_namespaced_service(
        ns,
        {"metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}},
    )
    request = urllib.request.Request(
        server.url + f"/api/v1/namespaces/{ns}/services?fieldSelector=metadata.name%3Dsvc",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    with urllib.request.urlopen(request, timeout=10, context=ssl_context(server)) as resp:
        table = json.loads(resp.read())
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "Selector"]
    assert [c["priority"] for c in table["columnDefinitions"]] == [0, 0, 0, 0, 0, 0, 1]
    row = table["rows"][0]
    assert row["cells"][:2] == ["svc", "ClusterIP"]
    assert row["cells"][4] == "80/TCP" and row["cells"][6] == "app=x"
    assert row["object"]["kind"] == "PartialObjectMetadata"


def test_crd_group_prefers_by_version_priority(server: ApiServer, api: client.ApiClient) -> None:
    group = server.group
    # Listed alpha first, and spread over two CRDs registered alpha-only first: the apiserver
    # still orders the group by version priority, so v1 is preferred in /apis and /apis/G.
    create_crd(server, crd("gadgets", group=group, kind="Gadget", versions=("v1alpha2",)))
    create_crd(server, crd(group=group, versions=("v1alpha2", "v1beta1", "v1")))
    expected = ["v1", "v1beta1", "v1alpha2"]
    found = next(g for g in get_json(server, "/apis")["groups"] if g["name"] == group)
    assert [v["version"] for v in found["versions"]] == expected
    assert found["preferredVersion"] == {"groupVersion": f"{group}/v1", "version": "v1"}
    single = get_json(server, f"/apis/{group}")
    assert [v["version"] for v in single["versions"]] == expected
    assert single["preferredVersion"]["version"] == "v1"
    # the client's discovery picks the same one
    dyn = dynamic.DynamicClient(api)
    assert dyn.resources.get(group=group, kind="Widget", preferred=True).api_version == "v1"


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


# kubesim says it is Kubernetes 1.34 (what it models); the real control plane is 1.37.
VERSIONS = {"kubesim": ("1", "34"), "realkube": ("1", "37")}


def test_policy_v1beta1_is_gone(server: ApiServer, ns: str) -> None:
    # PodDisruptionBudget policy/v1beta1 was removed in Kubernetes 1.25.
    version = get_json(server, "/version")
    assert (version["major"], version["minor"]) == VERSIONS[server.kind]
    status, body = raw_request(server, "GET", "/apis/policy/v1beta1")
    assert status == 404, body
    assert [v["version"] for v in get_json(server, "/apis/policy")["versions"]] == ["v1"]
    pdb = {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "old"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}},
    }
    path = f"/apis/policy/v1beta1/namespaces/{ns}/poddisruptionbudgets"
    assert raw_request(server, "POST", path, pdb)[0] == 404


KUBECTL_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)


def get_aggregated(
    sim: ApiServer, path: str, accept: str = KUBECTL_ACCEPT, etag: str = ""
) -> tuple[int, dict[str, str], Any]:
    """GET with an Accept header: (status, headers named in lower case, JSON body or None for
    304)."""
    headers = {"Accept": accept}
    if etag:
        headers["If-None-Match"] = etag
    request = urllib.request.Request(sim.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=ssl_context(sim)) as resp:
            return resp.status, _lower(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 304:
            return 304, _lower(err.headers), None
        raise


def _lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _aggregated_kinds(document: Any) -> dict[str, set[tuple[str, str, bool]]]:
    """group/version -> {(plural, kind, namespaced)} from an APIGroupDiscoveryList."""
    found: dict[str, set[tuple[str, str, bool]]] = {}
    for group in document["items"]:
        name = group["metadata"].get("name", "")  # the core group has none
        for version in group["versions"]:
            gv = f"{name}/{version['version']}" if name else version["version"]
            found[gv] = {
                (r["resource"], r["responseKind"]["kind"], r["scope"] == "Namespaced")
                for r in version["resources"]
            }
    return found


def _legacy_kinds(sim: ApiServer, gv: str) -> set[tuple[str, str, bool]]:
    path = f"/apis/{gv}" if "/" in gv else f"/api/{gv}"
    return {
        (r["name"], r["kind"], r["namespaced"])
        for r in get_json(sim, path)["resources"]
        if "/" not in r["name"]
    }


def test_aggregated_discovery_matches_the_per_group_version_documents(
    server: ApiServer,
) -> None:
    status, headers, core = get_aggregated(server, "/api")
    assert status == 200
    assert headers["content-type"] == (
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    assert core["kind"] == "APIGroupDiscoveryList"
    assert core["apiVersion"] == "apidiscovery.k8s.io/v2"
    _, _, named = get_aggregated(server, "/apis")
    kinds = {**_aggregated_kinds(core), **_aggregated_kinds(named)}
    legacy_versions = ["v1"] + [
        v["groupVersion"] for g in get_json(server, "/apis")["groups"] for v in g["versions"]
    ]
    assert sorted(kinds) == sorted(legacy_versions)
    for gv in legacy_versions:
        assert kinds[gv] == _legacy_kinds(server, gv), gv
    # Preferred version first, as /apis lists it; subresources carry their own kind.
    groups = {g["metadata"]["name"]: g for g in named["items"]}
    legacy = {g["name"]: g for g in get_json(server, "/apis")["groups"]}
    for name, group in groups.items():
        assert group["versions"][0]["version"] == legacy[name]["preferredVersion"]["version"]
    apps = {r["resource"]: r for r in groups["apps"]["versions"][0]["resources"]}
    scale = {s["subresource"]: s for s in apps["deployments"]["subresources"]}["scale"]
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_aggregated_discovery_negotiation_and_etag(
    server: ApiServer, api: client.ApiClient
) -> None:
    group = server.group
    beta = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    # v2beta1 is gone (Kubernetes 1.33): asked for alone, it is not acceptable
    status, refused = raw_request(server, "GET", "/apis", headers={"Accept": beta})
    assert (status, refused["reason"]) == (406, "NotAcceptable")
    # Plain JSON first (or only) means the legacy documents.
    _, _, legacy = get_aggregated(server, "/apis", accept="application/json," + beta)
    assert legacy["kind"] == "APIGroupList"
    _, _, legacy = get_aggregated(server, "/api", accept="application/json")
    assert legacy["kind"] == "APIVersions"

    status, headers, _ = get_aggregated(server, "/apis")
    etag = headers["etag"]
    assert headers["vary"] == "Accept"
    status, _, body = get_aggregated(server, "/apis", etag=etag)
    assert (status, body) == (304, None)
    # A new CRD changes the document: a full answer with the new group.
    create_crd(server, crd(group=group))
    status, headers, document = get_aggregated(server, "/apis", etag=etag)
    assert status == 200 and headers["etag"] != etag
    assert group in {g["metadata"]["name"] for g in document["items"]}
