"""kubectl against kubesim: get, apply (server-side and client-side), rollout, wait, delete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubesim.harness import RunningSim
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import kubectl_binary

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {mode: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports: [{containerPort: 80, name: http}]
        env: [{name: MODE, value: demo}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.GROUP}
spec:
  group: GROUP
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget, shortNames: [gd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
---
apiVersion: GROUP/v1
kind: Gadget
metadata: {name: g1}
spec: {size: 3}
"""


class Kubectl:
    def __init__(
        self, sim: ApiServer | RunningSim, cache: Path, namespace: str = "default"
    ) -> None:
        self.cache = cache
        self.base = [
            kubectl_binary(),
            f"--kubeconfig={sim.kubeconfig}",
            f"--cache-dir={cache}",
            f"--namespace={namespace}",
        ]

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.base, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)


@pytest.fixture
def kubectl(server: ApiServer, tmp_path: Path) -> Kubectl:
    """kubectl as the admin, in the test's namespace."""
    return Kubectl(server, tmp_path / "cache", server.namespace)


@pytest.fixture
def sim_kubectl(kubesim: RunningSim, tmp_path: Path) -> Kubectl:
    """kubectl against a plain kubesim (for kubesim-only tests)."""
    return Kubectl(kubesim, tmp_path / "cache")


def crd_manifest(server: ApiServer) -> str:
    return CRD.replace("GROUP", server.group)


def test_get_namespaces_and_nodes(kubectl: Kubectl, server: ApiServer) -> None:
    out = kubectl.run("get", "namespaces").stdout
    for name in ("default", "kube-system", "kube-public", server.namespace):
        assert name in out
    nodes = kubectl.json("get", "nodes")
    assert nodes["kind"] == "List" or nodes["kind"] == "NodeList"
    # kubesim has one node (kubesim-node), the real control plane two fake ones: all Ready
    assert nodes["items"]
    for node in nodes["items"]:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    assert "serviceaccounts" in kubectl.run("api-resources").stdout


def test_server_side_apply_rollout_and_delete(kubectl: Kubectl) -> None:
    applied = kubectl.run("apply", "--server-side", "-f", "-", stdin=MANIFEST).stdout
    assert "deployment.apps/web serverside-applied" in applied
    kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
    before = kubectl.json("get", "deployment", "web")["metadata"]["resourceVersion"]
    kubectl.run("apply", "--server-side", "-f", "-", stdin=MANIFEST)
    assert kubectl.json("get", "deployment", "web")["metadata"]["resourceVersion"] == before
    pods = kubectl.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 2 and all(p["status"]["phase"] == "Running" for p in pods)
    # server-side printing: the usual columns
    table = kubectl.run("get", "pods", "-l", "app=web", "-o", "wide").stdout.splitlines()
    assert table[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert all(" 1/1 " in line and " Running " in line for line in table[1:])
    deploy = kubectl.run("get", "deployment", "web").stdout.splitlines()
    assert deploy[1].split()[:4] == ["web", "2/2", "2", "2"]
    # a change rolls out again
    kubectl.run(
        "apply", "--server-side", "-f", "-", stdin=MANIFEST.replace("nginx:1.27", "nginx:1.28")
    )
    kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
    deleted = kubectl.run("delete", "-f", "-", stdin=MANIFEST).stdout
    assert 'deployment.apps "web" deleted' in deleted
    remaining = kubectl.json("get", "deployments,replicasets,pods,services,configmaps")
    names = {(i["kind"], i["metadata"]["name"]) for i in remaining["items"]}
    assert not {n for n in names if n[1].startswith("web")}


def test_client_side_apply_without_validation(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "--validate=false", "-f", "-", stdin=MANIFEST).stdout
    assert "deployment.apps/web created" in out
    again = kubectl.run("apply", "--validate=false", "-f", "-", stdin=MANIFEST).stdout
    assert "deployment.apps/web unchanged" in again
    changed = MANIFEST.replace("value: demo", "value: live")
    out = kubectl.run("apply", "--validate=false", "-f", "-", stdin=changed).stdout
    assert "deployment.apps/web configured" in out
    env = kubectl.json("get", "deployment", "web")["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    assert env == [{"name": "MODE", "value": "live"}]
    kubectl.run("rollout", "status", "deployment/web", "--timeout=30s")
    kubectl.run("delete", "-f", "-", stdin=MANIFEST)


def test_crd_wait_and_custom_resources(kubectl: Kubectl, server: ApiServer) -> None:
    manifest = crd_manifest(server)
    crd_only = manifest.split("---", maxsplit=1)[0]
    kubectl.run("apply", "--server-side", "-f", "-", stdin=crd_only)
    kubectl.run(
        "wait", "--for=condition=Established", f"crd/gadgets.{server.group}", "--timeout=30s"
    )
    kubectl.run("apply", "--server-side", "-f", "-", stdin=manifest)
    gadgets = kubectl.json("get", f"gadgets.{server.group}")
    assert [g["metadata"]["name"] for g in gadgets["items"]] == ["g1"]
    assert "g1" in kubectl.run("get", f"gadgets.{server.group}").stdout
    kubectl.run("delete", "crd", f"gadgets.{server.group}")
    missing = kubectl.run("get", f"gadgets.{server.group}", check=False)
    assert missing.returncode != 0


def test_failing_rollout_reports_deadline(sim_kubectl: Kubectl) -> None:
    """kubesim only: its fail annotation keeps the Pods waiting (no kubelet to fail them)."""
    kubectl = sim_kubectl
    broken = MANIFEST.replace(
        "labels: {app: web}}",
        "labels: {app: web}, annotations: {kubesim.meshplane.io/fail: CrashLoopBackOff}}",
        1,
    )
    kubectl.run("apply", "--server-side", "-f", "-", stdin=broken)
    result = kubectl.run("rollout", "status", "deployment/web", "--timeout=20s", check=False)
    assert result.returncode != 0
    assert "exceeded its progress deadline" in result.stderr


def test_create_generators_send_protobuf(kubectl: Kubectl, server: ApiServer) -> None:
    made = server.unique("made")
    kubectl.run("create", "namespace", made)
    kubectl.run("-n", made, "create", "configmap", "c", "--from-literal=a=b")
    kubectl.run("-n", made, "create", "secret", "generic", "s", "--from-literal=p=q")
    kubectl.run("-n", made, "create", "serviceaccount", "robot")
    assert kubectl.json("-n", made, "get", "configmap", "c")["data"] == {"a": "b"}
    assert kubectl.json("-n", made, "get", "secret", "s")["data"] == {"p": "cQ=="}
    assert kubectl.json("get", "namespace", made)["status"]["phase"] == "Active"
    kubectl.run("-n", made, "delete", "secret", "s")


def test_kinds_kubesim_cannot_decode_from_protobuf_are_refused(sim_kubectl: Kubectl) -> None:
    """kubesim only: it decodes protobuf for a few kinds (the real server for all)."""
    refused = sim_kubectl.run("create", "deployment", "d", "--image=nginx", check=False)
    assert refused.returncode != 0 and "application/json" in refused.stderr


def test_kubectl_discovers_everything_in_two_aggregated_requests(
    sim_kubectl: Kubectl, kubesim: RunningSim
) -> None:
    """kubesim only: it counts the discovery requests it answers."""
    kubectl = sim_kubectl
    crd_only = CRD.replace("GROUP", "example.com").split("---", maxsplit=1)[0]
    kubectl.run("apply", "--server-side", "-f", "-", stdin=crd_only)
    kubectl.run("wait", "--for=condition=Established", "crd/gadgets.example.com", "--timeout=30s")
    fresh = Kubectl(kubesim, kubectl.cache.parent / "fresh-cache")
    before = kubesim.call(lambda: kubesim.sim.api.requests["discovery"])
    listed = fresh.run("api-resources").stdout
    asked = kubesim.call(lambda: kubesim.sim.api.requests["discovery"]) - before
    # /api and /apis in aggregated form, not one request per group-version (about twenty).
    assert asked <= 3, asked
    rows = {line.split()[0]: line for line in listed.splitlines()[1:]}
    assert "Gadget" in rows["gadgets"] and "gd" in rows["gadgets"]
    assert "Deployment" in rows["deployments"]
