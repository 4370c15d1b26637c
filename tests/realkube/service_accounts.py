"""ServiceAccounts, RBAC objects and token kubeconfigs on the real control plane, made through
kubectl with the admin kubeconfig (what an operator would run)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from realkube.control_plane import ControlPlane

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC_API = f"{RBAC_GROUP}/v1"


def kubectl(
    plane: ControlPlane, *args: str, stdin: str = "", kubeconfig: Path | None = None
) -> str:
    """Run kubectl (the admin kubeconfig unless ``kubeconfig``); its stdout; fails the test
    with kubectl's stderr when it fails."""
    command = [
        str(plane.settings.binaries.kubectl),
        "--kubeconfig",
        str(kubeconfig or plane.kubeconfig),
        *args,
    ]
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (args, done.stderr[-2000:])
    return done.stdout


def apply_objects(plane: ControlPlane, *objects: Mapping[str, Any]) -> None:
    """Server-side apply ``objects`` as the admin (field manager ``realkube-test``)."""
    text = yaml.safe_dump_all([dict(o) for o in objects])
    kubectl(plane, "apply", "--server-side", "--force-conflicts", "--field-manager",
            "realkube-test", "-f", "-", stdin=text)  # fmt: skip


def service_account(plane: ControlPlane, namespace: str, name: str) -> str:
    """Create ``namespace`` and the ServiceAccount ``name`` in it; its username."""
    apply_objects(
        plane,
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
        },
    )
    return f"system:serviceaccount:{namespace}:{name}"


def bind_cluster_role(
    plane: ControlPlane,
    role: str,
    *,
    subject: tuple[str, str],
    binding: str = "",
    namespace: str = "",
) -> str:
    """Bind ClusterRole ``role`` to the ServiceAccount ``subject`` (namespace, name): cluster-wide,
    or in ``namespace`` only (a RoleBinding). Returns the binding's name."""
    name = binding or f"{role}-{subject[1]}"
    metadata: dict[str, str] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    apply_objects(
        plane,
        {
            "apiVersion": RBAC_API,
            "kind": "RoleBinding" if namespace else "ClusterRoleBinding",
            "metadata": metadata,
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "namespace": subject[0], "name": subject[1]}],
        },
    )
    return name


def token_for(
    plane: ControlPlane, namespace: str, name: str, *, audiences: Sequence[str] = ()
) -> str:
    """A bound token for the ServiceAccount (TokenRequest, what `kubectl create token` asks)."""
    audience_args = [f"--audience={a}" for a in audiences]
    return kubectl(
        plane, "create", "token", name, "-n", namespace, "--duration=2h", *audience_args
    ).strip()


def token_kubeconfig(plane: ControlPlane, token: str, path: Path) -> Path:
    """A kubeconfig reaching the control plane with ``token`` (and nothing else), mode 0600."""
    admin = yaml.safe_load(plane.kubeconfig.read_text())
    cluster = admin["clusters"][0]["cluster"]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "realkube",
                "cluster": {
                    "server": cluster["server"],
                    "certificate-authority-data": cluster["certificate-authority-data"],
                },
            }
        ],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "realkube", "context": {"cluster": "realkube", "user": "token"}}],
        "current-context": "realkube",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(yaml.safe_dump(config, sort_keys=False))
    return path


def can_i(plane: ControlPlane, kubeconfig: Path, verb: str, resource: str, namespace: str) -> bool:
    """`kubectl auth can-i` as the kubeconfig's user (a SelfSubjectAccessReview)."""
    command = [
        str(plane.settings.binaries.kubectl),
        "--kubeconfig",
        str(kubeconfig),
        "auth",
        "can-i",
        verb,
        resource,
        *(["-n", namespace] if namespace else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() == "yes"


def get_object(plane: ControlPlane, kind: str, name: str) -> dict[str, Any]:
    """One cluster-scoped object as JSON."""
    loaded: dict[str, Any] = json.loads(kubectl(plane, "get", kind, name, "-o", "json"))
    return loaded
