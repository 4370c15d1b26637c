"""Which hosts a performance test may send load to: an operator allow-list, judged before any
connection or name lookup.

The coordinator generates load from inside the cluster, so without a limit any caller could
point it at any address it can reach (a database, the cloud metadata service, another tenant).
The list (``--perf-allowed-targets``) holds address networks (``127.0.0.0/8``, ``::1``,
``10.96.0.0/12``) and host name patterns (``localhost``, ``*.svc``, ``*.svc.cluster.local``);
the default admits loopback and cluster-internal Service names.

A host is judged from its text alone, without DNS: an IP literal must be in a listed network; a
name must match a listed pattern. Numeric host forms the C resolver would turn into an address
(``2130706433``, ``127.1``, ``0x0a000001``) are decoded the same way and judged as that address,
so a "name" that resolves off-loopback is refused. A name outside the patterns is refused
without being looked up: the lookup itself would reach a DNS server the caller chose nothing
about, and a name that resolves to loopback today may not tomorrow.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from serving.input_quoting import quoted

__all__ = [
    "DEFAULT_ALLOWED_TARGETS",
    "TargetAllowList",
    "TargetRefused",
    "endpoint_host",
]

DEFAULT_ALLOWED_TARGETS = "127.0.0.0/8,::1,localhost,*.svc,*.svc.cluster.local"

_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?")
_PATTERN = re.compile(r"[a-z0-9*]([a-z0-9.*-]*[a-z0-9])?")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(ValueError):
    """A target the allow-list does not admit; the message names the host and the flag."""


@dataclass(frozen=True, kw_only=True)
class TargetAllowList:
    """Address networks and host name patterns load may be sent to."""

    networks: tuple[_Network, ...]
    names: tuple[str, ...]
    text: str = DEFAULT_ALLOWED_TARGETS

    @classmethod
    def parse(cls, text: str) -> TargetAllowList:
        """``127.0.0.0/8,::1,*.svc`` → the list; ValueError names a bad entry."""
        networks: list[_Network] = []
        names: list[str] = []
        for raw in text.split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if not _PATTERN.fullmatch(entry):
                raise ValueError(
                    f"{quoted(entry, 60)} is neither an address network (127.0.0.0/8, ::1) nor "
                    "a host name pattern (localhost, *.svc)"
                )
            names.append(entry)
        return cls(networks=tuple(networks), names=tuple(names), text=text)

    def check(self, host: str, *, field: str) -> None:
        """Raise `TargetRefused` unless ``host`` is admitted (no connection, no lookup)."""
        address = _address(host)
        if address is not None:
            if any(
                address in network
                for network in self.networks
                if network.version == address.version
            ):
                return
            shown = host if str(address) == host else f"{host} (that is {address})"
            raise TargetRefused(
                f"{field}: {quoted(shown, 80)} is not an allowed performance-test target; this "
                f"coordinator sends load only to {self._described()} (--perf-allowed-targets)"
            )
        name = host.lower().rstrip(".")
        if _NAME.fullmatch(name) and any(fnmatch.fnmatchcase(name, p) for p in self.names):
            return
        raise TargetRefused(
            f"{field}: host {quoted(host, 80)} is not an allowed performance-test target; this "
            f"coordinator sends load only to {self._described()} (--perf-allowed-targets); "
            "names are matched as written, never looked up"
        )

    def _described(self) -> str:
        return ", ".join([*(str(n) for n in self.networks), *self.names]) or "nothing"


def _address(host: str) -> _Address | None:
    """The address ``host`` denotes without DNS: an IP literal, or a numeric IPv4 form."""
    text = host.strip("[]")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return address.ipv4_mapped
        return address
    if re.fullmatch(r"[0-9a-fA-FxX.]+", text) and re.search(r"[0-9]", text):
        try:  # what the C resolver does with 2130706433, 127.1, 0x7f.1, 017700000001
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def endpoint_host(url: str, *, grpc: bool) -> str:
    """The host a load client would connect to for ``url``; TargetRefused when there is none.

    HTTP URLs must be ``http://host[:port]/...``; gRPC targets ``host:port`` (optionally
    ``grpc://`` or ``http://``), never a resolver scheme such as ``unix:`` or ``dns:``.
    """
    if grpc:
        target = url
        for scheme in ("grpc://", "http://"):
            if target.startswith(scheme):
                target = target[len(scheme) :]
        target = target.rstrip("/")
        host, colon, port = target.rpartition(":")
        if not colon or not port.isascii() or not port.isdigit() or not host:
            raise TargetRefused(
                f"{quoted(url, 80)} is not a gRPC target of the form host:port (or "
                "grpc://host:port)"
            )
        return host
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise TargetRefused(f"{quoted(url, 80)} is not a usable URL: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise TargetRefused(f"{quoted(url, 80)} is not an http://host[:port]/path URL")
    return parts.hostname
