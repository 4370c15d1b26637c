"""Helm (through helm-python-sdk, Go's client underneath) installs, upgrades and uninstalls.

Helm keeps releases in Secrets written by a typed Go client in protobuf, so this also covers
kubesim's protobuf decoding; `wait="watcher"` needs the simulated controllers to make the
Deployment ready.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.kubesim.servers import ApiServer


def test_install_upgrade_uninstall(
    server: ApiServer, api: client.ApiClient, tmp_path: Path
) -> None:
    import helm_python as helm

    apps_ns = server.unique("apps")
    chart = helm.Chart.create("demo", tmp_path)
    cfg = helm.Config(kubeconfig_path=server.kubeconfig, namespace=apps_ns)
    try:
        release = cfg.install(
            chart,
            "demo",
            {"replicaCount": 2},
            namespace=apps_ns,
            create_namespace=True,
            wait="watcher",
            timeout=60,
        )
        assert release["status"] == "deployed"
        apps = client.AppsV1Api(api)
        deployment = apps.read_namespaced_deployment("demo", apps_ns)
        assert deployment.status.ready_replicas == 2
        core = client.CoreV1Api(api)
        secrets = core.list_namespaced_secret(apps_ns, label_selector="owner=helm").items
        assert [s.type for s in secrets] == ["helm.sh/release.v1"]
        upgraded = cfg.upgrade(
            chart, "demo", {"replicaCount": 3}, namespace=apps_ns, wait="watcher", timeout=60
        )
        assert upgraded["revision"] == 2
        assert apps.read_namespaced_deployment("demo", apps_ns).status.ready_replicas == 3
        cfg.uninstall("demo")
        assert apps.list_namespaced_deployment(apps_ns).items == []
        assert core.list_namespaced_secret(apps_ns, label_selector="owner=helm").items == []
    finally:
        cfg.close()
