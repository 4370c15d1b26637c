"""The simulated controllers: workloads become ready, jobs complete, services get endpoints."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client

from tests.kubesim.conftest import KUBESIM_ONLY
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import deployment, eventually

FAIL = "kubesim.meshplane.io/fail"


def _template(name: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "busybox:1.36"}]},
    }


def test_deployment_rolls_out(api: client.ApiClient, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("web", replicas=3))

    def rolled_out() -> Any:
        d = apps.read_namespaced_deployment("web", ns)
        s = d.status
        return (
            s.observed_generation == d.metadata.generation
            and s.updated_replicas == 3
            and s.available_replicas == 3
            and s.ready_replicas == 3
            and s.replicas == 3
        )

    eventually(rolled_out)
    replica_sets = apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    assert len(replica_sets) == 1
    rs = replica_sets[0]
    assert rs.metadata.owner_references[0].kind == "Deployment"
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 3
    for pod in pods:
        assert pod.status.phase == "Running" and pod.status.pod_ip
        assert pod.metadata.owner_references[0].uid == rs.metadata.uid
        assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "True"
    conditions = {
        c.type: c.reason for c in apps.read_namespaced_deployment("web", ns).status.conditions
    }
    assert conditions == {
        "Available": "MinimumReplicasAvailable",
        "Progressing": "NewReplicaSetAvailable",
    }
    # a template change rolls a new replica set; the old one scales to zero
    apps.patch_namespaced_deployment(
        "web",
        ns,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "nginx:2"}]}}}},
    )
    eventually(rolled_out)
    sets = apps.list_namespaced_replica_set(ns, label_selector="app=web").items
    assert sorted(s.spec.replicas for s in sets) == [0, 3]
    images = {
        p.spec.containers[0].image
        for p in core.list_namespaced_pod(ns, label_selector="app=web").items
    }
    assert images == {"nginx:2"}
    # scale subresource
    apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 1}})
    eventually(lambda: len(core.list_namespaced_pod(ns, label_selector="app=web").items) == 1)


@KUBESIM_ONLY  # kubesim's fail annotation: the real cluster has no such switch
def test_fail_annotation_keeps_a_workload_unready(api: client.ApiClient, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(
        ns, deployment("broken", replicas=1, annotations={FAIL: "ImagePullBackOff"})
    )

    def stuck() -> Any:
        pods = core.list_namespaced_pod(ns, label_selector="app=broken").items
        if not pods or not pods[0].status.container_statuses:
            return False
        return pods[0].status.container_statuses[0].state.waiting.reason

    assert eventually(stuck) == "ImagePullBackOff"
    progressing = eventually(
        lambda: next(
            (
                c
                for c in apps.read_namespaced_deployment("broken", ns).status.conditions or []
                if c.type == "Progressing" and c.status == "False"
            ),
            None,
        )
    )
    assert progressing.reason == "ProgressDeadlineExceeded"
    status = apps.read_namespaced_deployment("broken", ns).status
    assert not status.available_replicas
    pod = core.list_namespaced_pod(ns, label_selector="app=broken").items[0]
    events = core.list_namespaced_event(
        ns, field_selector=f"involvedObject.name={pod.metadata.name}"
    ).items
    assert [(e.type, e.reason) for e in events] == [("Warning", "ImagePullBackOff")]
    try:
        core.read_namespaced_pod_log(pod.metadata.name, ns)
    except client.ApiException as err:
        assert err.status == 400 and "is waiting to start: ImagePullBackOff" in err.body
    else:
        raise AssertionError("a waiting container has no logs")


@KUBESIM_ONLY  # the real API server fetches logs from a kubelet; kwok's fake Nodes run none
def test_pod_logs(api: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        ns,
        {
            "metadata": {"name": "two"},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]},
        },
    )
    eventually(lambda: core.read_namespaced_pod("two", ns).status.phase == "Running")
    assert core.read_namespaced_pod_log("two", ns, container="b") == (
        "kubesim: container b started from image b:1\n"
    )
    try:
        core.read_namespaced_pod_log("two", ns)
    except client.ApiException as err:
        assert err.status == 400 and "choose one of: [a b]" in err.body
    else:
        raise AssertionError("two containers need a container name")


def create_statefulset_daemonset_and_job(api: client.ApiClient, ns: str) -> None:
    """A two-replica StatefulSet `db`, a DaemonSet `agent` and a two-completion Job `once`."""
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _template("db"),
            },
        },
    )
    apps.create_namespaced_daemon_set(
        ns,
        {
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template("agent")},
        },
    )
    batch.create_namespaced_job(
        ns,
        {
            "metadata": {"name": "once"},
            "spec": {
                "completions": 2,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "busybox:1"}],
                    }
                },
            },
        },
    )


def assert_statefulset_ready_with_ordinal_pods(api: client.ApiClient, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)

    def sts_ready() -> bool:
        s = apps.read_namespaced_stateful_set("db", ns).status
        return bool(s.ready_replicas == 2 and s.current_revision == s.update_revision)

    eventually(sts_ready)
    pods = sorted(
        p.metadata.name for p in core.list_namespaced_pod(ns, label_selector="app=db").items
    )
    assert pods == ["db-0", "db-1"]


def assert_daemonset_ready_on_every_node(api: client.ApiClient, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    nodes = len(core.list_node().items)  # kubesim has one, the real control plane two
    eventually(
        lambda: apps.read_namespaced_daemon_set("agent", ns).status.number_ready == nodes,
        timeout=60,
    )


def assert_job_completes(api: client.ApiClient, ns: str) -> None:
    """The Job completes twice, its selector keyed by its own uid."""
    batch = client.BatchV1Api(api)

    def job_done() -> bool:
        job = batch.read_namespaced_job("once", ns)
        return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

    eventually(job_done)
    job = batch.read_namespaced_job("once", ns)
    assert job.status.succeeded == 2
    assert job.spec.selector.match_labels["batch.kubernetes.io/controller-uid"] == (
        job.metadata.uid
    )


def test_statefulset_daemonset_job(api: client.ApiClient, ns: str) -> None:
    create_statefulset_daemonset_and_job(api, ns)
    assert_statefulset_ready_with_ordinal_pods(api, ns)
    assert_daemonset_ready_on_every_node(api, ns)
    assert_job_completes(api, ns)


def create_load_balancer_service(core: client.CoreV1Api, ns: str) -> None:
    """Service `api` of type LoadBalancer: a cluster IP and a node port at once."""
    svc = core.create_namespaced_service(
        ns,
        {
            "metadata": {"name": "api"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "api"},
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
        },
    )
    assert svc.spec.cluster_ip.startswith("10.9")
    assert svc.spec.ports[0].node_port >= 30000


def slices_of_api(discovery: client.DiscoveryV1Api, ns: str) -> list[Any]:
    found: list[Any] = discovery.list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=api"
    ).items
    return found


def assert_endpoints_and_slice_list_both_pods(api: client.ApiClient, ns: str) -> None:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)

    def addresses() -> Any:
        try:  # (the real endpoints controller writes them a moment later)
            ep = core.read_namespaced_endpoints("api", ns)
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        subsets = ep.subsets or []
        return len(subsets[0].addresses or []) == 2 and subsets[0] if subsets else None

    subset = eventually(addresses, timeout=60)
    assert subset.ports[0].port == 8080  # the named target port resolved

    def slices() -> Any:  # (the real EndpointSlice controller is a separate controller)
        found = slices_of_api(discovery, ns)
        return found if len(found) == 1 and len(found[0].endpoints or []) == 2 else None

    eventually(slices, timeout=60)


def assert_endpoints_go_with_the_service(api: client.ApiClient, ns: str) -> None:
    core, discovery = client.CoreV1Api(api), client.DiscoveryV1Api(api)
    core.delete_namespaced_service("api", ns)

    def endpoints_gone() -> bool:
        try:
            core.read_namespaced_endpoints("api", ns)
        except client.ApiException as err:
            return err.status == 404
        return False

    eventually(endpoints_gone, timeout=60)
    eventually(lambda: not slices_of_api(discovery, ns), timeout=60)


def test_services_get_endpoints_and_load_balancer_ips(api: client.ApiClient, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment(ns, deployment("api", replicas=2))
    create_load_balancer_service(core, ns)
    assert_endpoints_and_slice_list_both_pods(api, ns)
    ingress = eventually(
        lambda: core.read_namespaced_service("api", ns).status.load_balancer.ingress, timeout=60
    )
    assert ingress[0].ip
    apps.patch_namespaced_deployment_scale("api", ns, {"spec": {"replicas": 1}})
    eventually(
        lambda: len(core.read_namespaced_endpoints("api", ns).subsets[0].addresses) == 1,
        timeout=60,
    )
    assert_endpoints_go_with_the_service(api, ns)


@KUBESIM_ONLY  # kubesim's --ready-delay setting
def test_ready_delay_is_honoured(server: ApiServer, api: client.ApiClient, ns: str) -> None:
    assert server.kubesim().sim.config.ready_delay == 0.05
    core = client.CoreV1Api(api)
    pod = core.create_namespaced_pod(
        ns,
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    )
    assert pod.status.phase == "Pending"
    assert pod.spec.containers[0].image_pull_policy == "Always"
    eventually(lambda: core.read_namespaced_pod("p", ns).status.phase == "Running")


def test_claims_of_a_stateful_set_bind(api: client.ApiClient, server: ApiServer, ns: str) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_stateful_set(
        ns,
        {
            "metadata": {"name": "store"},
            "spec": {
                "replicas": 2,
                "serviceName": "store",
                "selector": {"matchLabels": {"app": "store"}},
                "template": _template("store"),
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "2Gi"}},
                        },
                    }
                ],
            },
        },
    )

    def bound() -> Any:
        claims = core.list_namespaced_persistent_volume_claim(ns).items
        return len(claims) == 2 and all(c.status.phase == "Bound" for c in claims) and claims

    claims = eventually(bound, timeout=60)
    assert sorted(c.metadata.name for c in claims) == ["data-store-0", "data-store-1"]
    for claim in claims:
        # kubesim binds at the requested size; the real PV controller to a volume of the pool,
        # whose capacity the claim reports
        volume = core.read_persistent_volume(claim.spec.volume_name) if server.real else None
        expected = volume.spec.capacity if volume is not None else {"storage": "2Gi"}
        assert claim.status.capacity == expected


@KUBESIM_ONLY  # kubesim's autoscalers only report; the real controller scales to minReplicas
def test_autoscalers_report(api: client.ApiClient, ns: str) -> None:
    apps = client.AppsV1Api(api)
    autoscaling = client.AutoscalingV2Api(api)
    apps.create_namespaced_deployment(ns, deployment("scaled", replicas=2))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        ns,
        {
            "metadata": {"name": "scaled"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scaled"},
                "minReplicas": 3,
                "maxReplicas": 5,
            },
        },
    )
    status = eventually(
        lambda: (
            autoscaling.read_namespaced_horizontal_pod_autoscaler(
                "scaled", ns
            ).status.current_replicas
            == 2
            and autoscaling.read_namespaced_horizontal_pod_autoscaler("scaled", ns).status
        )
    )
    assert status.desired_replicas == 3
    apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 4}})
    eventually(
        lambda: (
            autoscaling.read_namespaced_horizontal_pod_autoscaler(
                "scaled", ns
            ).status.desired_replicas
            == 4
        )
    )
    rv = autoscaling.read_namespaced_horizontal_pod_autoscaler(
        "scaled", ns
    ).metadata.resource_version
    time.sleep(0.3)  # settled: no status rewrites in a loop
    assert (
        autoscaling.read_namespaced_horizontal_pod_autoscaler(
            "scaled", ns
        ).metadata.resource_version
        == rv
    )
