"""Settings of a server command: each flag with an environment-variable fallback.

Precedence: command-line flag, then ``<PREFIX><FLAG>`` (upper case, '-' → '_'), then the
caller's default. Containers are configured through the environment, a developer through flags;
both name the same settings, and ``--help`` lists each variable's name. The adapter and the
coordinator declare their flags as a ``FlagTable`` and keep only their settings' fields.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from serving.tls import TlsConfig, server_tls

__all__ = [
    "HEALTH_PORT_FLAG",
    "LOGGING_FLAGS",
    "SERVER_TLS_FLAGS",
    "Flag",
    "FlagTable",
    "SettingsError",
    "boolean",
    "choice",
    "duration",
    "health_port_setting",
    "non_negative_int",
    "optional_path",
    "port",
    "positive_float",
    "positive_int",
    "server_tls_setting",
]


class SettingsError(ValueError):
    """A flag or environment variable has a value the command cannot use."""


@dataclass(frozen=True, kw_only=True)
class Flag:
    """One setting: its flag, how its text is parsed, and its help (the env name is added)."""

    flag: str
    help: str
    parse: Callable[[str], object] = str
    metavar: str | None = None
    switch: bool = False
    """A flag without a value (``store_const "true"``); its variable takes a boolean text."""

    @property
    def dest(self) -> str:
        """The argparse attribute and the key of the resolved value."""
        return self.flag.removeprefix("--").replace("-", "_")


@dataclass(frozen=True, kw_only=True)
class FlagTable:
    """A command's flags and the prefix of their environment variables."""

    env_prefix: str
    flags: tuple[Flag, ...]

    def env(self, flag: Flag) -> str:
        """The environment variable standing in for ``flag``."""
        return self.env_prefix + flag.dest.upper()

    def add_to(self, group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
        """Add every flag; each help text names its environment variable."""
        for spec in self.flags:
            help_text = f"{spec.help} [env {self.env(spec)}]"
            if spec.switch:
                group.add_argument(
                    spec.flag,
                    dest=spec.dest,
                    action="store_const",
                    const="true",
                    default=None,
                    help=help_text,
                )
            else:
                group.add_argument(
                    spec.flag, dest=spec.dest, default=None, metavar=spec.metavar, help=help_text
                )

    def resolve(
        self, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> dict[str, object]:
        """Parsed values by ``dest`` of the flags given (flag, else a non-empty variable).

        Raises `SettingsError` naming the flag or variable the bad text came from.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for spec in self.flags:
            raw: str | None = getattr(args, spec.dest, None)
            source = spec.flag
            if raw is None:
                raw = env.get(self.env(spec)) or None
                source = self.env(spec)
            if raw is None:
                continue
            try:
                values[spec.dest] = spec.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{source}={raw!r}: {exc}") from exc
        return values


def positive_int(text: str) -> int:
    """An integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"{value} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (0 usually turns a bound off)."""
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ValueError(f"{text[:40]!r} is not a non-negative integer")
    return int(text)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``168h``, ``7d`` (one number, one unit); ``0`` is zero."""
    if text == "0":
        return timedelta(0)
    number, unit = text[:-1], text[-1:]
    if (
        unit not in _DURATION_UNITS
        or not number.isascii()
        or not number.isdigit()
        or len(number) > 9
    ):
        raise ValueError(f"{text[:40]!r} is not a duration like 90s, 30m, 168h or 7d")
    return timedelta(seconds=int(number) * _DURATION_UNITS[unit])


def port(text: str) -> int:
    """A TCP port; 0 lets the kernel pick."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{value} is not a TCP port (0-65535)")
    return value


def positive_float(text: str) -> float:
    """A number greater than 0 (seconds, mostly)."""
    value = float(text)
    if value <= 0:
        raise ValueError(f"{value:g} is not a positive number")
    return value


def boolean(text: str) -> bool:
    """The usual spellings of true and false; empty is false."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting exactly one of ``allowed``."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text

    return parse


def optional_path(values: Mapping[str, object], name: str) -> Path | None:
    """A resolved path setting, None when it was not given."""
    value = values.get(name)
    return value if isinstance(value, Path) else None


SERVER_TLS_FLAGS: tuple[Flag, ...] = (
    Flag(flag="--tls-cert", parse=Path, help="PEM certificate chain served to clients"),
    Flag(flag="--tls-key", parse=Path, help="PEM private key for --tls-cert"),
    Flag(flag="--tls-client-ca", parse=Path, help="PEM CA; clients must present a cert it signed"),
)

HEALTH_PORT_FLAG = Flag(
    flag="--health-port",
    parse=port,
    help="plaintext port serving only grpc.health.v1.Health, for kubelet probes while the "
    "main port serves TLS (default: off; 0 picks one)",
)

LOGGING_FLAGS: tuple[Flag, ...] = (
    Flag(
        flag="--log-level",
        parse=choice("debug", "info", "warning", "error"),
        help="debug, info, warning or error (info)",
    ),
    Flag(
        flag="--log-format",
        parse=choice("auto", "json", "console"),
        help="auto (JSON unless a terminal), json or console",
    ),
)


def server_tls_setting(values: Mapping[str, object]) -> TlsConfig | None:
    """The server TLS of resolved ``SERVER_TLS_FLAGS`` values (None: plaintext)."""
    try:
        return server_tls(
            cert=optional_path(values, "tls_cert"),
            key=optional_path(values, "tls_key"),
            client_ca=optional_path(values, "tls_client_ca"),
        )
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


def health_port_setting(values: Mapping[str, object], *, main_port: int) -> int | None:
    """The resolved ``HEALTH_PORT_FLAG`` (None: off); it cannot share the main port."""
    value = values.get("health_port")
    if value is None:
        return None
    health_port = int(str(value))
    if health_port != 0 and health_port == main_port:
        raise SettingsError(f"--health-port {health_port} is the gRPC port; pick another one")
    return health_port
