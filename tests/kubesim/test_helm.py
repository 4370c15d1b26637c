"""Helm (through helm-python-sdk, Go's client underneath) installs, upgrades and uninstalls.

Helm keeps releases in Secrets written by a typed Go client in protobuf, so this also covers
kubesim's protobuf decoding; `wait="watcher"` needs the simulated controllers to make the
Deployment ready.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from kubesim.harness import RunningSim


def test_install_upgrade_uninstall(
    kubesim: RunningSim, api_client: client.ApiClient, tmp_path: Path
) -> None:
    import helm_python as helm

    chart = helm.Chart.create("demo", tmp_path)
    cfg = helm.Config(kubeconfig_path=kubesim.kubeconfig, namespace="apps")
    try:
        release = cfg.install(
            chart,
            "demo",
            {"replicaCount": 2},
            namespace="apps",
            create_namespace=True,
            wait="watcher",
            timeout=60,
        )
        assert release["status"] == "deployed"
        apps = client.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment("demo", "apps")
        assert deployment.status.ready_replicas == 2
        core = client.CoreV1Api(api_client)
        secrets = core.list_namespaced_secret("apps", label_selector="owner=helm").items
        assert [s.type for s in secrets] == ["helm.sh/release.v1"]
        upgraded = cfg.upgrade(
            chart, "demo", {"replicaCount": 3}, namespace="apps", wait="watcher", timeout=60
        )
        assert upgraded["revision"] == 2
        assert apps.read_namespaced_deployment("demo", "apps").status.ready_replicas == 3
        cfg.uninstall("demo")
        assert apps.list_namespaced_deployment("apps").items == []
        assert core.list_namespaced_secret("apps", label_selector="owner=helm").items == []
    finally:
        cfg.close()
