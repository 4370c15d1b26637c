"""Runtime pieces every meshplane gRPC server shares: bootstrap, logging, retries, TLS."""

from serving.background_tasks import BackgroundTasks
from serving.grpc_server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    HEALTH_SERVICE_NAME,
    GrpcServer,
    KeepaliveConfig,
    ServerConfig,
)
from serving.health import HealthService
from serving.logging_setup import configure_logging
from serving.retry_policies import (
    RETRYABLE_GRPC_CODES,
    RETRYABLE_IDEMPOTENT_GRPC_CODES,
    RETRYABLE_KUBERNETES_STATUSES,
    BackoffWait,
    RetryAfterWait,
    call_retrying,
    grpc_retry,
    is_retryable_grpc_error,
    is_retryable_kubernetes_error,
    kubernetes_retry,
    kubernetes_retry_blocking,
    retry_after_seconds,
)
from serving.tls import (
    ClientTls,
    InsecureTransportError,
    TlsConfig,
    add_client_tls_arguments,
    add_server_tls_arguments,
    channel_credentials,
    client_tls_from_args,
    dial,
    is_loopback,
    server_credentials,
    server_tls_from_args,
)

__all__ = [
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
    "call_retrying",
    "channel_credentials",
    "client_tls_from_args",
    "configure_logging",
    "dial",
    "grpc_retry",
    "is_loopback",
    "is_retryable_grpc_error",
    "is_retryable_kubernetes_error",
    "kubernetes_retry",
    "kubernetes_retry_blocking",
    "retry_after_seconds",
    "server_credentials",
    "server_tls_from_args",
]
