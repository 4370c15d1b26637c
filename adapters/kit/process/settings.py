"""Adapter settings: every flag of `meshplane adapter MESH`, with an environment fallback each.

Precedence: command-line flag, then ``MESHPLANE_ADAPTER_<FLAG>`` (upper case, '-' → '_'), then
the declaration's or the kit's default (the machinery is ``serving.command_settings``).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from adapters.kit.declare.mesh import MeshDeclaration
from adapters.kit.model.grants import PolicyGrant
from adapters.kit.model.object_policy import (
    ALLOW_ELEVATED_FLAG,
    ALLOW_PROTECTED_FLAG,
    DEFAULT_PROTECTED_NAMESPACES,
    PROTECTED_NAMESPACES_FLAG,
    ObjectPolicy,
    protected_namespaces_from,
)
from adapters.kit.model.request_kubeconfigs import ALLOW_FLAG, SERVERS_FLAG, RequestKubeconfigPolicy
from adapters.kit.model.server_patterns import ServerPattern, parse_server_patterns
from adapters.kit.run.journal import MAX_RECORD_BYTES
from serving.command_settings import (
    HEALTH_PORT_FLAG,
    LOGGING_FLAGS,
    SERVER_TLS_FLAGS,
    Flag,
    FlagTable,
    SettingsError,
    boolean,
    health_port_setting,
    optional_path,
    port,
    positive_float,
    positive_int,
    server_tls_setting,
)
from serving.link_tokens import LinkTokenError, read_link_token
from serving.tls import TlsConfig

__all__ = ["ENV_PREFIX", "AdapterSettings", "SettingsError", "add_arguments", "settings_from_args"]

ENV_PREFIX = "MESHPLANE_ADAPTER_"


@dataclass(frozen=True, kw_only=True)
class AdapterSettings:
    """Everything an adapter process is configured with."""

    host: str = "127.0.0.1"
    port: int = 0
    kubeconfig: Path | None = None
    """Kubeconfig of the adapter's own cluster; None means in-cluster or ~/.kube/config."""
    kube_context: str = ""
    chart_repo: str = ""
    """Chart repository URL; empty means the declaration's."""
    manifests_url: str = ""
    """Sample/add-on manifest location; empty means the declaration's."""
    mirror_dir: Path | None = None
    """Offline mirror of charts and manifests (air-gapped installs)."""
    metrics_port: int | None = None
    """Port of ``/metrics``: None is off, 0 lets the kernel pick (tests)."""
    state_dir: Path | None = None
    """Journal and event log directory; None keeps them in memory (lost on restart)."""
    cache_dir: Path | None = None
    event_retention: int = 10_000
    event_retention_bytes: int = 64 * 1024 * 1024
    """Encoded size of the events kept for replay, at most (the oldest go first)."""
    event_queue_size: int = 1_000
    operation_timeout_seconds: float = 900.0
    max_concurrent_operations: int = 4
    journal_size: int = 1_000
    journal_bytes: int = 256 * 1024 * 1024
    """Encoded size of the kept operation records, at most (the oldest finished go first)."""
    shutdown_grace_seconds: float = 10.0
    tls: TlsConfig | None = None
    health_port: int | None = None
    """Plaintext port serving only gRPC health (probes of a TLS adapter); None is off."""
    log_level: str = "info"
    log_format: str = "auto"
    allow_request_kubeconfigs: bool = False
    """Accept kubeconfigs in requests (data-only, allowed servers); off: the adapter's own only."""
    allowed_cluster_servers: tuple[ServerPattern, ...] = ()
    """API server host patterns request kubeconfigs may point at (`server_patterns`)."""
    coordinator_token: str | None = field(default=None, repr=False)
    """The link token only the coordinator presents (``--coordinator-token-file``); None: any
    caller is served, as without it."""
    protected_namespaces: frozenset[str] = DEFAULT_PROTECTED_NAMESPACES
    """Namespaces no operation may write in (the defaults plus --protected-namespaces)."""
    allow_protected_namespaces: bool = False
    allow_elevated_objects: bool = False
    """Request YAML may hold cluster-scoped, escalating RBAC, admission, CRD, PriorityClass and
    privileged objects (`object_policy`); off by default."""

    @property
    def kubeconfig_policy(self) -> RequestKubeconfigPolicy:
        """What request kubeconfigs the runner accepts."""
        return RequestKubeconfigPolicy(
            accept=self.allow_request_kubeconfigs, servers=self.allowed_cluster_servers
        )

    @property
    def trusts_forwarded_identity(self) -> bool:
        """True when every caller is a coordinator (link token, or a client certificate from
        ``--tls-client-ca``), so the end-user identity it forwards is believed."""
        return self.coordinator_token is not None or (self.tls is not None and self.tls.mutual)

    @property
    def object_policy(self) -> ObjectPolicy:
        """The namespace and kind policy these settings give every operation."""
        return ObjectPolicy(
            protected_namespaces=self.protected_namespaces,
            operator=PolicyGrant(
                elevated=self.allow_elevated_objects,
                protected_namespaces=self.allow_protected_namespaces,
            ),
        )


_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def _namespace_list(text: str) -> frozenset[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if not _DNS1123_LABEL.fullmatch(name) or len(name) > 63:
            raise ValueError(f"{name[:80]!r} is not a namespace name (DNS-1123 label)")
    return protected_namespaces_from(names)


_FLAGS = FlagTable(
    env_prefix=ENV_PREFIX,
    flags=(
        Flag(flag="--host", help="address to listen on (default 127.0.0.1)"),
        Flag(flag="--port", parse=port, help="gRPC port (default: the mesh's port; 0 picks one)"),
        Flag(flag="--kubeconfig", parse=Path, help="kubeconfig of the adapter's own cluster"),
        Flag(flag="--kube-context", help="context within --kubeconfig (default: current-context)"),
        Flag(
            flag="--chart-repo", metavar="URL", help="chart repository (default: the official one)"
        ),
        Flag(flag="--manifests-url", metavar="URL", help="where sample apps and add-ons come from"),
        Flag(flag="--mirror", parse=Path, metavar="DIR", help="offline mirror of charts/manifests"),
        Flag(flag="--metrics-port", parse=port, help="Prometheus /metrics port (0, default: off)"),
        Flag(flag="--state-dir", parse=Path, help="keep the journal and event log here"),
        Flag(flag="--cache-dir", parse=Path, help="cache downloaded charts and manifests here"),
        Flag(flag="--event-retention", parse=positive_int, help="events kept for replay (10000)"),
        Flag(
            flag="--event-retention-bytes",
            parse=positive_int,
            metavar="BYTES",
            help="encoded size of the events kept for replay, at most (67108864)",
        ),
        Flag(flag="--event-queue", parse=positive_int, help="per-subscriber backlog (1000)"),
        Flag(
            flag="--operation-timeout",
            parse=positive_float,
            metavar="SECONDS",
            help="default operation deadline (900)",
        ),
        Flag(
            flag="--max-concurrent-operations",
            parse=positive_int,
            help="operations running at once; more wait PENDING (4)",
        ),
        Flag(flag="--journal-size", parse=positive_int, help="operation records kept (1000)"),
        Flag(
            flag="--journal-bytes",
            parse=positive_int,
            metavar="BYTES",
            help="encoded size of the operation records kept, at most (268435456; at least "
            "4194304)",
        ),
        Flag(
            flag="--shutdown-grace",
            parse=positive_float,
            metavar="SECONDS",
            help="time running work gets to stop on SIGTERM (10)",
        ),
        Flag(
            flag=ALLOW_FLAG,
            parse=boolean,
            switch=True,
            help="accept kubeconfigs in requests (inline credentials only, servers matching "
            f"{SERVERS_FLAG}); default: off, every request uses the adapter's own cluster",
        ),
        Flag(
            flag=SERVERS_FLAG,
            parse=parse_server_patterns,
            metavar="PATTERNS",
            help="comma list of API server hosts request kubeconfigs may point at: "
            "'api.corp.example', '*.corp.example' (one label), '10.0.0.7', '[fd00::7]', each "
            "optionally ':PORT' (docs/security.md)",
        ),
        Flag(
            flag=PROTECTED_NAMESPACES_FLAG,
            parse=_namespace_list,
            metavar="NS,NS",
            help="namespaces no operation may write in, added to kube-system, kube-public and "
            "kube-node-lease",
        ),
        Flag(
            flag=ALLOW_PROTECTED_FLAG,
            parse=boolean,
            switch=True,
            help="let operations write in protected namespaces (off)",
        ),
        Flag(
            flag=ALLOW_ELEVATED_FLAG,
            parse=boolean,
            switch=True,
            help="let request YAML create cluster-scoped objects, cluster RBAC, RBAC that "
            "escalates, webhooks, CRDs, PriorityClasses and privileged pods (off)",
        ),
        *SERVER_TLS_FLAGS,
        Flag(
            flag="--coordinator-token-file",
            parse=Path,
            metavar="PATH",
            help="accept calls only from a coordinator presenting this token (its "
            "--adapter-token-file); health stays open",
        ),
        HEALTH_PORT_FLAG,
        *LOGGING_FLAGS,
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every adapter flag; each help text names its environment variable."""
    _FLAGS.add_to(parser.add_argument_group("adapter settings (flag, else environment variable)"))


def settings_from_args(
    args: argparse.Namespace,
    declaration: MeshDeclaration,
    environ: Mapping[str, str] | None = None,
) -> AdapterSettings:
    """Resolve flags, then environment, then defaults; raises `SettingsError` naming the source."""
    values = _FLAGS.resolve(args, environ)

    def get(name: str, default: object) -> object:
        return values.get(name, default)

    token_file = optional_path(values, "coordinator_token_file")
    try:
        token = None if token_file is None else read_link_token(token_file)
    except LinkTokenError as exc:
        raise SettingsError(f"--coordinator-token-file: {exc}") from exc
    metrics_port = values.get("metrics_port", 0)
    allow_kubeconfigs = bool(values.get("allow_request_kubeconfigs", False))
    listed = values.get("allowed_cluster_servers", ())
    servers = listed if isinstance(listed, tuple) else ()
    if allow_kubeconfigs and not servers:
        raise SettingsError(
            f"{ALLOW_FLAG} needs {SERVERS_FLAG} (the API server hosts request kubeconfigs may "
            "point at, e.g. '*.corp.example,10.0.0.7:6443')"
        )
    protected = values.get("protected_namespaces")
    grpc_port = int(str(get("port", declaration.default_port)))
    return AdapterSettings(
        host=str(get("host", "127.0.0.1")),
        port=grpc_port,
        kubeconfig=optional_path(values, "kubeconfig"),
        kube_context=str(get("kube_context", "")),
        chart_repo=str(get("chart_repo", declaration.chart_repository)),
        manifests_url=str(get("manifests_url", declaration.manifests_url)),
        mirror_dir=optional_path(values, "mirror"),
        metrics_port=None if metrics_port == 0 else int(str(metrics_port)),
        state_dir=optional_path(values, "state_dir"),
        cache_dir=optional_path(values, "cache_dir"),
        event_retention=int(str(get("event_retention", 10_000))),
        event_retention_bytes=int(str(get("event_retention_bytes", 64 * 1024 * 1024))),
        event_queue_size=int(str(get("event_queue", 1_000))),
        operation_timeout_seconds=float(str(get("operation_timeout", 900.0))),
        max_concurrent_operations=int(str(get("max_concurrent_operations", 4))),
        journal_size=int(str(get("journal_size", 1_000))),
        journal_bytes=_journal_bytes(values),
        shutdown_grace_seconds=float(str(get("shutdown_grace", 10.0))),
        tls=server_tls_setting(values),
        health_port=health_port_setting(values, main_port=grpc_port),
        log_level=str(get("log_level", "info")),
        log_format=str(get("log_format", "auto")),
        allow_request_kubeconfigs=allow_kubeconfigs,
        allowed_cluster_servers=servers,
        coordinator_token=token,
        protected_namespaces=protected
        if isinstance(protected, frozenset)
        else DEFAULT_PROTECTED_NAMESPACES,
        allow_protected_namespaces=values.get("allow_protected_namespaces") is True,
        allow_elevated_objects=values.get("allow_elevated_objects") is True,
    )


def _journal_bytes(values: Mapping[str, object]) -> int:
    value = int(str(values.get("journal_bytes", 256 * 1024 * 1024)))
    if value < MAX_RECORD_BYTES:
        raise SettingsError(
            f"--journal-bytes {value} is below one record's maximum ({MAX_RECORD_BYTES})"
        )
    return value
