"""The public names of ``serving`` are pinned: changing them is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

import serving
from tests.fixtures_paths import PROJECT_ROOT

EXPECTED = {
    "DEFAULT_MAX_MESSAGE_BYTES",
    "HEALTH_SERVICE_NAME",
    "RETRYABLE_GRPC_CODES",
    "RETRYABLE_IDEMPOTENT_GRPC_CODES",
    "RETRYABLE_KUBERNETES_STATUSES",
    "BackgroundTasks",
    "BackoffWait",
    "ClientTls",
    "GrpcServer",
    "HealthService",
    "InsecureTransportError",
    "KeepaliveConfig",
    "RetryAfterWait",
    "ServerConfig",
    "TlsConfig",
    "add_client_tls_arguments",
    "add_server_tls_arguments",
    "channel_credentials",
    "client_tls_from_args",
    "configure_logging",
    "dial",
    "grpc_retry",
    "is_loopback",
    "is_retryable_grpc_error",
    "is_retryable_kubernetes_error",
    "kubernetes_retry",
    "call_retrying",
    "kubernetes_retry_blocking",
    "retry_after_seconds",
    "server_credentials",
    "server_tls_from_args",
}


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert set(serving.__all__) == EXPECTED
    assert len(serving.__all__) == len(EXPECTED)
    for name in serving.__all__:
        assert getattr(serving, name) is not None, name


def test_importing_serving_does_not_load_the_kubernetes_clients() -> None:
    code = "import sys, serving; sys.exit(any(m.startswith('kubernetes') for m in sys.modules))"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], check=False, timeout=60, cwd=PROJECT_ROOT
        ).returncode
        == 0
    )
