"""The coordinator's own Kubernetes API client: in a pod its ServiceAccount, else a kubeconfig.

Used by adapter discovery and by TokenReview/SubjectAccessReview checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubernetes.aio import client as _kube_client
from kubernetes.aio import config as _kube_config

from serving.kubernetes_transport import resolve_proxy_once

__all__ = ["kube_client", "open_api_client"]

# The client's modules carry no usable annotations.
kube_client: Any = _kube_client
kube_config: Any = _kube_config


async def open_api_client(kubeconfig: Path | None) -> Any:
    """An ApiClient (close it when done): the kubeconfig given; else, in a pod, the
    ServiceAccount; else ``$KUBECONFIG`` or ``~/.kube/config``."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = kube_client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return resolve_proxy_once(kube_client.ApiClient(configuration))
    return resolve_proxy_once(
        await kube_config.new_client_from_config(
            config_file=None if kubeconfig is None else str(kubeconfig),
            persist_config=False,
        )
    )
