"""Installing a rendered manifest the kubectl way, timed: `kubectl apply --server-side`, then
the waits a script would run for the same workloads, then `kubectl delete`.

Every kubectl run is one process; its wall time and CPU (user + system, from `wait4`) are what
it cost. The waits cover what the adapter waits for (`adapters.kit.apply.readiness.waits_for`): CRDs
Established, Deployments/DaemonSets/StatefulSets rolled out, Jobs complete, LoadBalancer
Services with an address; one command after another, in manifest order.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from adapters.kit.apply.readiness import waits_for

WAIT_TIMEOUT = "--timeout=300s"
ROLLED_OUT = frozenset({"Deployment", "DaemonSet", "StatefulSet"})


@dataclass(frozen=True, kw_only=True)
class Kubectl:
    """One kubectl binary pointed at one server, with its own discovery cache."""

    binary: Path
    kubeconfig: Path
    cache: Path

    def run(self, *args: str) -> tuple[float, float]:
        """Run kubectl ARGS to completion: (wall seconds, CPU seconds); fails on an error."""
        command = [
            str(self.binary),
            "--kubeconfig",
            str(self.kubeconfig),
            "--cache-dir",
            str(self.cache),
            *args,
        ]
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        assert child.stderr is not None
        errors = child.stderr.read().decode(errors="replace")
        child.stderr.close()
        child.returncode = os.waitstatus_to_exitcode(status)
        assert child.returncode == 0, f"kubectl {' '.join(args)}: {errors[-2000:]}"
        return seconds, usage.ru_utime + usage.ru_stime

    def warm_discovery(self) -> None:
        """Fill the discovery cache (what a kubectl used before on this server has)."""
        self.run("api-resources")


def wait_commands(manifest: Path) -> list[list[str]]:
    """The kubectl commands that wait for the manifest's objects as the adapter does."""
    crds: list[str] = []
    commands: list[list[str]] = []
    for obj in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
        if not obj or not waits_for(obj):
            continue
        kind = str(obj["kind"])
        name = str(obj["metadata"]["name"])
        namespace = (
            ["-n", str(obj["metadata"]["namespace"])] if obj["metadata"].get("namespace") else []
        )
        if kind == "CustomResourceDefinition":
            crds.append(f"crd/{name}")
        elif kind in ROLLED_OUT:
            commands.append(["rollout", "status", f"{kind.lower()}/{name}", *namespace])
        elif kind == "Job":
            commands.append(["wait", "--for=condition=Complete", f"job/{name}", *namespace])
        elif kind == "Service":
            path = "--for=jsonpath={.status.loadBalancer.ingress}"
            commands.append(["wait", path, f"service/{name}", *namespace])
        else:
            raise AssertionError(f"no kubectl wait for {kind} {name}")
    if crds:
        commands.insert(0, ["wait", "--for=condition=Established", *crds])
    return [[*command, WAIT_TIMEOUT] for command in commands]


@dataclass(frozen=True, kw_only=True)
class KubectlInstall:
    """One timed kubectl install."""

    apply: float
    """`kubectl apply --server-side`, seconds."""
    ready: float
    """Apply plus every wait, seconds."""
    apply_cpu: float
    """CPU seconds of the apply."""
    cpu: float
    """CPU seconds of every kubectl run of the install."""
    waits: int
    """kubectl wait/rollout commands run."""


def kubectl_install(kubectl: Kubectl, manifest: Path, *, wait: bool = True) -> KubectlInstall:
    """Apply the manifest server-side, then (``wait``) wait for its workloads; timed."""
    commands = wait_commands(manifest) if wait else []
    started = time.perf_counter()
    apply, apply_cpu = kubectl.run("apply", "--server-side", "-f", str(manifest))
    cpu = apply_cpu
    for command in commands:
        cpu += kubectl.run(*command)[1]
    ready = time.perf_counter() - started
    return KubectlInstall(
        apply=apply, ready=ready, apply_cpu=apply_cpu, cpu=cpu, waits=len(commands)
    )


def kubectl_remove(kubectl: Kubectl, manifest: Path) -> None:
    """Delete what the manifest created and wait until it is gone (not timed)."""
    kubectl.run("delete", "--ignore-not-found", "--wait", WAIT_TIMEOUT, "-f", str(manifest))
