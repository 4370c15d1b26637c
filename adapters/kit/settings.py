"""Adapter settings: every flag of `meshplane adapter MESH`, with an environment fallback each.

Precedence: command-line flag, then ``MESHPLANE_ADAPTER_<FLAG>`` (upper case, '-' → '_'), then
the declaration's or the kit's default. Containers are configured through the environment, a
developer through flags; both name the same settings, and `--help` lists the variable names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.kit.catalogue import MeshDeclaration
from serving.tls import TlsConfig

__all__ = ["ENV_PREFIX", "AdapterSettings", "SettingsError", "add_arguments", "settings_from_args"]

ENV_PREFIX = "MESHPLANE_ADAPTER_"


class SettingsError(ValueError):
    """A flag or environment variable has a value the adapter cannot use."""


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
    event_queue_size: int = 1_000
    operation_timeout_seconds: float = 900.0
    max_concurrent_operations: int = 4
    journal_size: int = 1_000
    shutdown_grace_seconds: float = 10.0
    tls: TlsConfig | None = None
    log_level: str = "info"
    log_format: str = "auto"


@dataclass(frozen=True, kw_only=True)
class _Flag:
    flag: str
    help: str
    parse: Callable[[str], object] = str
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive integer")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0-65535)")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"{value:g} is not a positive number")
    return value


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


_FLAGS: tuple[_Flag, ...] = (
    _Flag(flag="--host", help="address to listen on (default 127.0.0.1)"),
    _Flag(flag="--port", parse=_port, help="gRPC port (default: the mesh's port; 0 picks one)"),
    _Flag(flag="--kubeconfig", parse=Path, help="kubeconfig of the adapter's own cluster"),
    _Flag(flag="--kube-context", help="context within --kubeconfig (default: current-context)"),
    _Flag(flag="--chart-repo", metavar="URL", help="chart repository (default: the official one)"),
    _Flag(flag="--manifests-url", metavar="URL", help="where sample apps and add-ons come from"),
    _Flag(flag="--mirror", parse=Path, metavar="DIR", help="offline mirror of charts/manifests"),
    _Flag(flag="--metrics-port", parse=_port, help="Prometheus /metrics port (0, default: off)"),
    _Flag(flag="--state-dir", parse=Path, help="keep the journal and event log here"),
    _Flag(flag="--cache-dir", parse=Path, help="cache downloaded charts and manifests here"),
    _Flag(flag="--event-retention", parse=_positive_int, help="events kept for replay (10000)"),
    _Flag(flag="--event-queue", parse=_positive_int, help="per-subscriber backlog (1000)"),
    _Flag(
        flag="--operation-timeout",
        parse=_positive_float,
        metavar="SECONDS",
        help="default operation deadline (900)",
    ),
    _Flag(
        flag="--max-concurrent-operations",
        parse=_positive_int,
        help="operations running at once; more wait PENDING (4)",
    ),
    _Flag(flag="--journal-size", parse=_positive_int, help="operation records kept (1000)"),
    _Flag(
        flag="--shutdown-grace",
        parse=_positive_float,
        metavar="SECONDS",
        help="time running work gets to stop on SIGTERM (10)",
    ),
    _Flag(flag="--tls-cert", parse=Path, help="PEM certificate chain served to clients"),
    _Flag(flag="--tls-key", parse=Path, help="PEM private key for --tls-cert"),
    _Flag(flag="--tls-client-ca", parse=Path, help="PEM CA; clients must present a cert it signed"),
    _Flag(
        flag="--log-level",
        parse=_choice("debug", "info", "warning", "error"),
        help="debug, info, warning or error (info)",
    ),
    _Flag(
        flag="--log-format",
        parse=_choice("auto", "json", "console"),
        help="auto (JSON unless a terminal), json or console",
    ),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every adapter flag; each help text names its environment variable."""
    group = parser.add_argument_group("adapter settings (flag, else environment variable)")
    for spec in _FLAGS:
        group.add_argument(
            spec.flag,
            dest=spec.dest,
            default=None,
            metavar=spec.metavar,
            help=f"{spec.help} [env {spec.env}]",
        )


def settings_from_args(
    args: argparse.Namespace,
    declaration: MeshDeclaration,
    environ: Mapping[str, str] | None = None,
) -> AdapterSettings:
    """Resolve flags, then environment, then defaults; raises `SettingsError` naming the source."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for spec in _FLAGS:
        raw: str | None = getattr(args, spec.dest, None)
        source = spec.flag
        if raw is None:
            raw = env.get(spec.env) or None
            source = spec.env
        if raw is None:
            continue
        try:
            values[spec.dest] = spec.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{source}={raw!r}: {exc}") from exc

    def get(name: str, default: object) -> object:
        return values.get(name, default)

    tls = _tls(values)
    metrics_port = values.get("metrics_port", 0)
    return AdapterSettings(
        host=str(get("host", "127.0.0.1")),
        port=int(str(get("port", declaration.default_port))),
        kubeconfig=values.get("kubeconfig"),  # type: ignore[arg-type]
        kube_context=str(get("kube_context", "")),
        chart_repo=str(get("chart_repo", declaration.chart_repository)),
        manifests_url=str(get("manifests_url", declaration.manifests_url)),
        mirror_dir=values.get("mirror"),  # type: ignore[arg-type]
        metrics_port=None if metrics_port == 0 else int(str(metrics_port)),
        state_dir=values.get("state_dir"),  # type: ignore[arg-type]
        cache_dir=values.get("cache_dir"),  # type: ignore[arg-type]
        event_retention=int(str(get("event_retention", 10_000))),
        event_queue_size=int(str(get("event_queue", 1_000))),
        operation_timeout_seconds=float(str(get("operation_timeout", 900.0))),
        max_concurrent_operations=int(str(get("max_concurrent_operations", 4))),
        journal_size=int(str(get("journal_size", 1_000))),
        shutdown_grace_seconds=float(str(get("shutdown_grace", 10.0))),
        tls=tls,
        log_level=str(get("log_level", "info")),
        log_format=str(get("log_format", "auto")),
    )


def _tls(values: Mapping[str, object]) -> TlsConfig | None:
    cert = values.get("tls_cert")
    key = values.get("tls_key")
    client_ca = values.get("tls_client_ca")
    if cert is None and key is None:
        if client_ca is not None:
            raise SettingsError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not isinstance(cert, Path) or not isinstance(key, Path):
        raise SettingsError("--tls-cert and --tls-key go together")
    return TlsConfig(
        cert_path=cert,
        key_path=key,
        client_ca_path=client_ca if isinstance(client_ca, Path) else None,
    )
