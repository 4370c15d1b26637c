"""Building the `kubernetes.aio` client a cluster session talks through, from a kubeconfig.

A request's kubeconfig arrives only as a `JudgedKubeconfig` (inline credentials, an allowed
server) and never reaches the client's config loader: the client is configured from its values
alone. The operator's file and the defaults (`$KUBECONFIG`, `~/.kube/config`, else the
in-cluster ServiceAccount) are loaded by the client as kubectl would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml
from kubernetes.aio import config as _typed_kube_config
from kubernetes.aio.client import ApiClient, Configuration

from adapters.kit.apply.kube_errors import ApplyError
from adapters.kit.model.records import ErrorDetail
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig

__all__ = ["api_client"]

# The client's config loaders and response objects carry no annotations.
kube_config: Any = _typed_kube_config


async def api_client(
    *,
    kubeconfig: JudgedKubeconfig | None = None,
    kubeconfig_path: str | os.PathLike[str] | None = None,
    context: str | None = None,
) -> ApiClient:
    """A client from a judged request kubeconfig, the operator's kubeconfig file, or (neither)
    the defaults; a kubeconfig that cannot be loaded is KUBECONFIG_INVALID."""
    try:
        if kubeconfig is not None:
            return _judged_client(kubeconfig)
        path = kubeconfig_path or _default_kubeconfig_path()
        if path is not None:
            client: ApiClient = await kube_config.new_client_from_config(
                config_file=str(path), context=context, persist_config=False
            )
            return client
        configuration = Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return ApiClient(configuration=configuration)
    except (kube_config.ConfigException, yaml.YAMLError, OSError, ValueError) as exc:
        raise ApplyError(_bad_kubeconfig(str(exc))) from exc


def _judged_client(judged: JudgedKubeconfig) -> ApiClient:
    """A client configured from a judged request kubeconfig's values, and nothing else.

    Python's TLS loads a client certificate only from files: it is written to a private
    temporary directory, loaded when the client is built, and removed at once.
    """
    configuration = Configuration(host=judged.server)
    if judged.authorization:
        configuration.api_key["BearerToken"] = judged.authorization
    configuration.ca_cert_data = judged.certificate_authority or None
    configuration.tls_server_name = judged.tls_server_name or None
    if not judged.client_certificate:
        return ApiClient(configuration=configuration)
    with tempfile.TemporaryDirectory(prefix="meshplane-client-") as directory:
        cert_file, key_file = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        for path, content in (
            (cert_file, judged.client_certificate),
            (key_file, judged.client_key),
        ):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(content)
        configuration.cert_file, configuration.key_file = str(cert_file), str(key_file)
        api = ApiClient(configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    return api


def _default_kubeconfig_path() -> Path | None:
    env = os.environ.get("KUBECONFIG", "")
    for candidate in [p for p in env.split(os.pathsep) if p] or [_kube_config_default()]:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    return None


def _kube_config_default() -> str:
    """The client's default kubeconfig location (``~/.kube/config``)."""
    return str(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)


def _bad_kubeconfig(reason: str) -> ErrorDetail:
    return ErrorDetail(
        code="KUBECONFIG_INVALID",
        message=f"cannot load the kubeconfig: {reason}",
        probable_cause="the kubeconfig is malformed, or names a context/user that is missing",
        suggested_remediation="check the kubeconfig (kubectl config view) and the context name",
    )
