"""Coordinator settings: every flag of `meshplane coordinator`, with an environment fallback each.

Precedence: command-line flag, then ``MESHPLANE_COORDINATOR_<FLAG>`` (upper case, '-' → '_'),
then the default (the machinery is ``serving.command_settings``). Static adapters come from
repeatable ``--adapter MESH=HOST:PORT`` flags plus
``MESHPLANE_ADAPTERS="istio=host:port,linkerd=host:port"``; both lists are used.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from coordinator.perf.limits import PerfLimits
from coordinator.perf.target_policy import DEFAULT_ALLOWED_TARGETS, TargetAllowList
from coordinator.server.identity.permissions import DEFAULT_PROTECTED_NAMESPACES
from coordinator.server.retention import RetentionPolicy
from coordinator.store.location import ENV_PREFIX, STORE_FILE
from serving.command_settings import (
    HEALTH_PORT_FLAG,
    LOGGING_FLAGS,
    SERVER_TLS_FLAGS,
    Flag,
    FlagTable,
    SettingsError,
    boolean,
    duration,
    health_port_setting,
    non_negative_int,
    optional_path,
    port,
    positive_float,
    positive_int,
    server_tls_setting,
)
from serving.durations import parse_duration
from serving.link_tokens import LinkTokenError, read_link_token
from serving.tls import ClientTls, TlsConfig

__all__ = [
    "ADAPTERS_ENV",
    "DEFAULT_PORT",
    "ENV_PREFIX",
    "CoordinatorSettings",
    "SettingsError",
    "StaticAdapter",
    "add_arguments",
    "parse_adapter_list",
    "parse_static_adapter",
    "settings_from_args",
]

ADAPTERS_ENV = "MESHPLANE_ADAPTERS"
DEFAULT_PORT = 10100


@dataclass(frozen=True, kw_only=True)
class StaticAdapter:
    """One ``MESH=HOST:PORT`` entry from the command line or environment."""

    mesh: str
    address: str


@dataclass(frozen=True, kw_only=True)
class CoordinatorSettings:
    """Everything a coordinator process is configured with."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    adapters: tuple[StaticAdapter, ...] = ()
    data_dir: Path = Path(".data")
    store: str = ""
    """PostgreSQL URL, ``sqlite:///abs/path`` or a file path; empty: <data_dir>/coordinator.db."""
    discover_namespace: str = ""
    """Namespace watched for adapter Services/EndpointSlices; empty turns discovery off."""
    kubeconfig: Path | None = None
    """Kubeconfig for discovery; None: in-cluster config in a pod, else $KUBECONFIG/~/.kube."""
    tls: TlsConfig | None = None
    health_port: int | None = None
    """Plaintext port serving only gRPC health (probes of a TLS coordinator); None is off."""
    adapter_tls: ClientTls | None = None
    allow_insecure_adapters: bool = False
    adapter_token: str | None = field(default=None, repr=False)
    """The link token presented to adapters that proved they hold it (``--adapter-token-file``);
    None: adapters are called without one."""
    call_timeout_seconds: float = 10.0
    """Deadline of an outbound call when the caller set none (or a longer one)."""
    retry_attempts: int = 3
    health_backoff_initial_seconds: float = 0.1
    health_backoff_max_seconds: float = 5.0
    shutdown_grace_seconds: float = 10.0
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    """Port of ``/metrics`` (Prometheus text); None is off, 0 lets the kernel pick."""
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    perf: PerfLimits = field(default_factory=PerfLimits)
    """What performance tests may do (``--perf-*``)."""
    log_level: str = "info"
    log_format: str = "auto"
    token_auth_file: Path | None = None
    """kube-apiserver style static token CSV (``token,user,uid,"g1,g2"``); None is off."""
    authn_kubernetes: bool = False
    """Check bearer tokens with the cluster's TokenReview (through ``kubeconfig``)."""
    authn_kubernetes_audiences: tuple[str, ...] = ()
    authz_kubernetes: bool = False
    """Authorize each call with a SubjectAccessReview instead of the built-in role groups."""
    auth_cache_seconds: float = 10.0
    """How long TokenReview and SubjectAccessReview answers are reused."""
    allow_anonymous: bool = False
    """Accept calls without credentials (with no authentication configured: everything)."""
    protected_namespaces: tuple[str, ...] = DEFAULT_PROTECTED_NAMESPACES
    """Operations in these namespaces need the admin role (privilegedoperations)."""
    audit_retention: timedelta | None = timedelta(hours=720)
    """Audit records older than this are deleted (None keeps them by age)."""
    audit_retention_count: int | None = 100_000
    """At most this many audit records are kept, the newest (None: no bound). Both are applied
    every ``retention.interval_seconds``."""

    @property
    def client_certificates(self) -> bool:
        """True when client certificates are identities (``--tls-client-ca``)."""
        return self.tls is not None and self.tls.client_ca_path is not None

    def identity_problem(self) -> str | None:
        """Why this configuration may not start (no way to authenticate, no --allow-anonymous)."""
        if (
            self.token_auth_file is None
            and not self.authn_kubernetes
            and not self.client_certificates
            and not self.allow_anonymous
        ):
            return (
                "no authentication configured: set --token-auth-file PATH, --authn-kubernetes "
                "or --tls-client-ca (client certificates), or pass --allow-anonymous to let "
                "anyone who reaches the port do anything"
            )
        return None

    @property
    def store_location(self) -> str:
        """Where the store lives: ``store`` when set, else the SQLite file in ``data_dir``."""
        return self.store or str(self.data_dir / STORE_FILE)


def parse_static_adapter(text: str) -> StaticAdapter:
    """``istio=127.0.0.1:10000`` → StaticAdapter; the mesh is lower-cased, the port checked."""
    mesh, sep, address = text.strip().partition("=")
    mesh = mesh.strip().lower()
    address = address.strip()
    if not sep or not mesh or not address:
        raise ValueError(f"{text!r} is not MESH=HOST:PORT")
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"{text!r}: {address!r} is not HOST:PORT")
    return StaticAdapter(mesh=mesh, address=address)


def parse_adapter_list(text: str) -> tuple[StaticAdapter, ...]:
    """The ``MESHPLANE_ADAPTERS`` form: comma-separated ``MESH=HOST:PORT`` entries."""
    return tuple(parse_static_adapter(item) for item in text.split(",") if item.strip())


def _test_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds < 1:
        raise ValueError("give at least 1s")
    return seconds


_FLAGS = FlagTable(
    env_prefix=ENV_PREFIX,
    flags=(
        Flag(flag="--host", help="address to listen on (default 127.0.0.1)"),
        Flag(flag="--port", parse=port, help=f"gRPC port (default {DEFAULT_PORT}; 0 picks one)"),
        Flag(flag="--data-dir", parse=Path, metavar="DIR", help="state directory (default .data)"),
        Flag(
            flag="--store",
            metavar="PATH_OR_URL",
            help="SQLite path or postgresql:// URL (default <data-dir>/coordinator.db)",
        ),
        Flag(
            flag="--discover-namespace",
            metavar="NS",
            help="discover adapters from Services labelled meshplane.io/adapter in NS",
        ),
        Flag(
            flag="--kubeconfig",
            parse=Path,
            help="kubeconfig for discovery (default: in-cluster, else ~/.kube/config)",
        ),
        *SERVER_TLS_FLAGS,
        HEALTH_PORT_FLAG,
        Flag(flag="--adapter-tls-ca", parse=Path, help="PEM CA that signs adapter certificates"),
        Flag(flag="--adapter-tls-cert", parse=Path, help="client certificate for adapters (mTLS)"),
        Flag(flag="--adapter-tls-key", parse=Path, help="PEM key for --adapter-tls-cert"),
        Flag(
            flag="--adapter-tls-server-name",
            help="name to verify in adapter certificates (override)",
        ),
        Flag(
            flag="--allow-insecure-adapters",
            parse=boolean,
            switch=True,
            help="allow plaintext to adapters that are not on loopback",
        ),
        Flag(
            flag="--adapter-token-file",
            parse=Path,
            metavar="PATH",
            help="link token presented to adapters (their --coordinator-token-file), only "
            "after each proves it holds the same token",
        ),
        Flag(
            flag="--call-timeout",
            parse=positive_float,
            metavar="SECONDS",
            help="deadline of calls to adapters when the client sets none (10)",
        ),
        Flag(flag="--retry-attempts", parse=positive_int, help="attempts for retryable calls (3)"),
        Flag(
            flag="--shutdown-grace",
            parse=positive_float,
            metavar="SECONDS",
            help="time in-flight calls get on SIGTERM (10)",
        ),
        Flag(
            flag="--metrics-port",
            parse=port,
            help="Prometheus /metrics port (default: off; 0 picks one)",
        ),
        Flag(
            flag="--metrics-host",
            help="address /metrics listens on (default 127.0.0.1: loopback only)",
        ),
        Flag(
            flag="--event-retention",
            parse=duration,
            metavar="DURATION",
            help="delete stored events older than this (168h; 0 keeps them by age)",
        ),
        Flag(
            flag="--event-retention-count",
            parse=non_negative_int,
            metavar="N",
            help="keep at most this many stored events, the newest (1000000; 0: no bound)",
        ),
        Flag(
            flag="--history-retention",
            parse=duration,
            metavar="DURATION",
            help="delete operations not updated for this long (2160h; 0 keeps them by age)",
        ),
        Flag(
            flag="--history-retention-count",
            parse=non_negative_int,
            metavar="N",
            help="keep at most this many operations, the newest (100000; 0: no bound)",
        ),
        Flag(
            flag="--retention-interval",
            parse=duration,
            metavar="DURATION",
            help="how often retention runs (5m)",
        ),
        Flag(
            flag="--token-auth-file",
            parse=Path,
            metavar="PATH",
            help='bearer tokens in kube-apiserver CSV form: token,user,uid,"group1,group2" '
            "(re-read when it changes; must not be world-readable)",
        ),
        Flag(
            flag="--authn-kubernetes",
            parse=boolean,
            switch=True,
            help="check bearer tokens with the cluster's TokenReview (through --kubeconfig)",
        ),
        Flag(
            flag="--authn-kubernetes-audiences",
            metavar="A,B",
            help="audiences TokenReview checks tokens for (default: the API server's)",
        ),
        Flag(
            flag="--authz-kubernetes",
            parse=boolean,
            switch=True,
            help="authorize every call with a SubjectAccessReview (API group meshplane.io) "
            "instead of the groups meshplane:viewers|operators|admins",
        ),
        Flag(
            flag="--auth-cache",
            parse=duration,
            metavar="DURATION",
            help="how long TokenReview and SubjectAccessReview answers are reused (10s)",
        ),
        Flag(
            flag="--allow-anonymous",
            parse=boolean,
            switch=True,
            help="accept calls without credentials; with no authentication configured this "
            "lets anyone who reaches the port do anything",
        ),
        Flag(
            flag="--protected-namespaces",
            metavar="NS,NS",
            help="operations here need the admin role "
            f"(default {','.join(DEFAULT_PROTECTED_NAMESPACES)})",
        ),
        Flag(
            flag="--audit-retention",
            parse=duration,
            metavar="DURATION",
            help="delete audit records older than this (720h; 0 keeps them by age)",
        ),
        Flag(
            flag="--audit-retention-count",
            parse=non_negative_int,
            metavar="N",
            help="keep at most this many audit records, the newest (100000; 0: no bound)",
        ),
        Flag(
            flag="--perf-max-connections",
            parse=positive_int,
            help="most connections one performance test may open (1000)",
        ),
        Flag(
            flag="--perf-max-duration",
            parse=_test_duration,
            metavar="DURATION",
            help="longest performance test, e.g. 10m (10m; also caps tests run by request count)",
        ),
        Flag(
            flag="--perf-max-rps",
            parse=positive_float,
            help="highest request rate a performance test may ask for (50000)",
        ),
        Flag(
            flag="--perf-max-concurrent-tests",
            parse=positive_int,
            help="performance tests run at once; more are refused (2)",
        ),
        Flag(
            flag="--perf-allowed-targets",
            parse=TargetAllowList.parse,
            metavar="LIST",
            help="networks and host patterns performance tests may target, comma-separated "
            f"({DEFAULT_ALLOWED_TARGETS})",
        ),
        Flag(
            flag="--perf-allow-wrk",
            parse=boolean,
            switch=True,
            help="let performance tests run the external wrk program",
        ),
        *LOGGING_FLAGS,
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every coordinator flag; each help text names its environment variable."""
    group = parser.add_argument_group("coordinator settings (flag, else environment variable)")
    group.add_argument(
        "--adapter",
        dest="adapter",
        action="append",
        default=None,
        metavar="MESH=HOST:PORT",
        help=f"a static adapter replica (repeatable) [env {ADAPTERS_ENV}, comma-separated]",
    )
    _FLAGS.add_to(group)


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> CoordinatorSettings:
    """Resolve flags, then environment, then defaults; raises `SettingsError` naming the source."""
    env = os.environ if environ is None else environ
    values = _FLAGS.resolve(args, env)
    adapters = _static_adapters(getattr(args, "adapter", None) or (), env)

    def get(name: str, default: object) -> object:
        return values.get(name, default)

    adapter_token = _adapter_token(values)
    grpc_port = int(str(get("port", DEFAULT_PORT)))
    settings = CoordinatorSettings(
        host=str(get("host", "127.0.0.1")),
        port=grpc_port,
        adapters=adapters,
        data_dir=optional_path(values, "data_dir") or Path(".data"),
        store=str(get("store", "")),
        discover_namespace=str(get("discover_namespace", "")),
        kubeconfig=optional_path(values, "kubeconfig"),
        tls=server_tls_setting(values),
        health_port=health_port_setting(values, main_port=grpc_port),
        adapter_tls=_adapter_tls(values),
        allow_insecure_adapters=bool(get("allow_insecure_adapters", False)),
        adapter_token=adapter_token,
        call_timeout_seconds=float(str(get("call_timeout", 10.0))),
        retry_attempts=int(str(get("retry_attempts", 3))),
        shutdown_grace_seconds=float(str(get("shutdown_grace", 10.0))),
        metrics_host=str(get("metrics_host", "127.0.0.1")),
        metrics_port=None
        if values.get("metrics_port") is None
        else int(str(values["metrics_port"])),
        retention=_retention(values),
        perf=_perf_limits(values),
        log_level=str(get("log_level", "info")),
        log_format=str(get("log_format", "auto")),
        token_auth_file=optional_path(values, "token_auth_file"),
        authn_kubernetes=bool(get("authn_kubernetes", False)),
        authn_kubernetes_audiences=_names(str(get("authn_kubernetes_audiences", ""))),
        authz_kubernetes=bool(get("authz_kubernetes", False)),
        auth_cache_seconds=_auth_cache(values),
        allow_anonymous=bool(get("allow_anonymous", False)),
        protected_namespaces=_names(
            str(get("protected_namespaces", ",".join(DEFAULT_PROTECTED_NAMESPACES)))
        ),
        audit_retention=_audit_bound(values, "audit_retention", timedelta(hours=720)),
        audit_retention_count=_audit_bound(values, "audit_retention_count", 100_000),
    )
    problem = settings.identity_problem()
    if problem is not None:
        raise SettingsError(problem)
    return settings


def _static_adapters(flags: Sequence[str], env: Mapping[str, str]) -> tuple[StaticAdapter, ...]:
    """``--adapter`` flags, then the environment's list; one mesh per address, no repeats."""
    adapters: list[StaticAdapter] = []
    for text in flags:
        try:
            adapters.append(parse_static_adapter(text))
        except ValueError as exc:
            raise SettingsError(f"--adapter: {exc}") from exc
    try:
        adapters.extend(parse_adapter_list(env.get(ADAPTERS_ENV, "")))
    except ValueError as exc:
        raise SettingsError(f"{ADAPTERS_ENV}: {exc}") from exc
    seen: dict[str, str] = {}
    for adapter in adapters:
        if seen.setdefault(adapter.address, adapter.mesh) != adapter.mesh:
            raise SettingsError(
                f"adapter address {adapter.address} given for two meshes: "
                f"{seen[adapter.address]} and {adapter.mesh}"
            )
    return tuple({a.address: a for a in adapters}.values())


def _adapter_token(values: Mapping[str, object]) -> str | None:
    """The link token adapters must prove they hold (``--adapter-token-file``), if any."""
    token_file = optional_path(values, "adapter_token_file")
    try:
        return None if token_file is None else read_link_token(token_file)
    except LinkTokenError as exc:
        raise SettingsError(f"--adapter-token-file: {exc}") from exc


def _auth_cache(values: Mapping[str, object]) -> float:
    value = values.get("auth_cache", timedelta(seconds=10))
    assert isinstance(value, timedelta)
    if value <= timedelta(0):
        raise SettingsError("--auth-cache must be longer than 0")
    return value.total_seconds()


_Bound = TypeVar("_Bound", timedelta, int)


def _audit_bound(values: Mapping[str, object], name: str, default: _Bound) -> _Bound | None:
    value = _bound(values, name, default)
    return value if isinstance(value, type(default)) else None


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _perf_limits(values: Mapping[str, object]) -> PerfLimits:
    defaults = PerfLimits()
    targets = values.get("perf_allowed_targets")
    return PerfLimits(
        max_connections=int(str(values.get("perf_max_connections", defaults.max_connections))),
        max_duration_seconds=float(
            str(values.get("perf_max_duration", defaults.max_duration_seconds))
        ),
        max_rps=float(str(values.get("perf_max_rps", defaults.max_rps))),
        max_concurrent_tests=int(
            str(values.get("perf_max_concurrent_tests", defaults.max_concurrent_tests))
        ),
        allowed_targets=targets
        if isinstance(targets, TargetAllowList)
        else defaults.allowed_targets,
        allow_wrk=bool(values.get("perf_allow_wrk", False)),
    )


def _adapter_tls(values: Mapping[str, object]) -> ClientTls | None:
    ca = optional_path(values, "adapter_tls_ca")
    cert, key = optional_path(values, "adapter_tls_cert"), optional_path(values, "adapter_tls_key")
    name = values.get("adapter_tls_server_name")
    if ca is None and cert is None and key is None and name is None:
        return None
    if (cert is None) != (key is None):
        raise SettingsError("--adapter-tls-cert and --adapter-tls-key go together")
    return ClientTls(
        ca_path=ca, cert_path=cert, key_path=key, server_name=str(name) if name else None
    )


def _bound(values: Mapping[str, object], name: str, default: object) -> object | None:
    """A retention bound: the given value (0 turns it off) or the default."""
    value = values.get(name, default)
    return None if value in (0, timedelta(0)) else value


def _retention(values: Mapping[str, object]) -> RetentionPolicy:
    defaults = RetentionPolicy()
    interval = values.get("retention_interval", timedelta(seconds=defaults.interval_seconds))
    assert isinstance(interval, timedelta)
    if interval <= timedelta(0):
        raise SettingsError("--retention-interval must be longer than 0")
    event_age = _bound(values, "event_retention", defaults.event_age)
    history_age = _bound(values, "history_retention", defaults.history_age)
    event_count = _bound(values, "event_retention_count", defaults.event_count)
    history_count = _bound(values, "history_retention_count", defaults.history_count)
    return RetentionPolicy(
        event_age=event_age if isinstance(event_age, timedelta) else None,
        event_count=event_count if isinstance(event_count, int) else None,
        history_age=history_age if isinstance(history_age, timedelta) else None,
        history_count=history_count if isinstance(history_count, int) else None,
        interval_seconds=interval.total_seconds(),
    )
