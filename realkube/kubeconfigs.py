"""Kubeconfig files for the control plane's clients: certificates embedded, mode 0600."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml

from realkube.certificates import ClientIdentity, Pki

CONTEXT = "realkube"


def _data(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, pki: Pki, identity: ClientIdentity) -> Path:
    """A kubeconfig whose one context reaches ``server`` as ``identity`` (client certificate)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT,
                "cluster": {"server": server, "certificate-authority-data": _data(pki.ca_cert)},
            }
        ],
        "users": [
            {
                "name": identity.user,
                "user": {
                    "client-certificate-data": _data(pki.client_cert(identity)),
                    "client-key-data": _data(pki.client_key(identity)),
                },
            }
        ],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": identity.user, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 before anything is written: the file holds a private key.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
