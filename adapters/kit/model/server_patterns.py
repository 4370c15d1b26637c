"""Which Kubernetes API servers a request kubeconfig may point at: the operator's host patterns.

``--allowed-cluster-servers`` is a comma list of patterns; a server URL is allowed when any one
matches. Matching is exact, never by prefix or resolution:

- ``api.corp.example`` matches that host name only (case-insensitive, a trailing dot ignored);
- ``*.corp.example`` matches exactly one more label: ``api.corp.example``, not ``corp.example``
  and not ``a.b.corp.example`` (the rule of TLS wildcard certificates);
- ``10.0.0.7`` and ``[fd00::7]`` match that address (IPv6 in brackets; ``[::1]`` equals
  ``[0:0::1]``); an address never matches a name and a name never matches an address, even when
  one resolves to the other;
- ``HOST:PORT`` also requires that port (the URL's, else 443 for https and 80 for http); without
  a port any port matches.

There is no pattern for "any server": an operator who accepts request kubeconfigs names where
they may point.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from dataclasses import dataclass

__all__ = [
    "IpAddress",
    "ServerPattern",
    "ServerUrl",
    "host_address",
    "is_loopback_host",
    "parse_server_patterns",
    "parse_server_url",
    "server_allowed",
]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_DNS_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")
_PORT = re.compile(r"[0-9]{1,5}")
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True, kw_only=True)
class ServerPattern:
    """One allowed host (or ``*.suffix``) with an optional port."""

    text: str
    """The pattern as the operator wrote it (normalised), for messages."""
    name: str = ""
    """A DNS name (lower case, no trailing dot); the suffix after ``*.`` when ``wildcard``."""
    wildcard: bool = False
    address: IpAddress | None = None
    port: int | None = None


@dataclass(frozen=True, kw_only=True)
class ServerUrl:
    """A judged API server URL, split into what patterns compare."""

    scheme: str
    host: str
    """A DNS name (lower case, no trailing dot) or an IP address as text (no brackets)."""
    address: IpAddress | None
    port: int
    """The explicit port, else the scheme's default."""
    url: str
    """The URL rebuilt from the parts above and the path: what the client is given."""


def host_address(host: str) -> IpAddress | None:
    """``host`` (no brackets) as an IP address, or None when it is a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name ``localhost``."""
    address = host_address(host)
    return host == "localhost" if address is None else address.is_loopback


def parse_server_patterns(text: str) -> tuple[ServerPattern, ...]:
    """The comma list of ``--allowed-cluster-servers``; raises ValueError saying which entry is
    not a pattern and why."""
    patterns = []
    for entry in (part.strip() for part in text.split(",")):
        if entry:
            patterns.append(_pattern(entry))
    return tuple(patterns)


def _pattern(entry: str) -> ServerPattern:
    shown = entry[:100]
    if "://" in entry or "/" in entry:
        raise ValueError(f"{shown!r}: write a host or HOST:PORT, not a URL")
    host, port = _split_port(entry, shown)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{shown!r}: an IPv6 address needs its closing ']'")
        address = host_address(host[1:-1])
        if not isinstance(address, ipaddress.IPv6Address):
            raise ValueError(f"{shown!r}: {host} is not an IPv6 address")
        return ServerPattern(text=_text(f"[{address}]", port), address=address, port=port)
    address = host_address(host)
    if isinstance(address, ipaddress.IPv6Address):
        raise ValueError(f"{shown!r}: write IPv6 addresses in brackets, e.g. [{address}]")
    if address is not None:
        return ServerPattern(text=_text(str(address), port), address=address, port=port)
    name = host.lower().removesuffix(".")
    wildcard = name.startswith("*.")
    if wildcard:
        name = name[2:]
    if "*" in name:
        raise ValueError(
            f"{shown!r}: '*' may only stand for the first label ('*.corp.example'); there is no "
            "pattern for every server"
        )
    if not name or len(name) > 253 or not _DNS_NAME.fullmatch(name):
        raise ValueError(
            f"{shown!r}: {host!r} is not a host name (letters, digits, '-' and '.'; "
            "internationalised names in their xn-- form)"
        )
    text = _text(("*." if wildcard else "") + name, port)
    return ServerPattern(text=text, name=name, wildcard=wildcard, port=port)


def _split_port(entry: str, shown: str) -> tuple[str, int | None]:
    """(host, port) of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``."""
    if entry.startswith("["):
        end = entry.find("]")
        host, rest = (entry, "") if end < 0 else (entry[: end + 1], entry[end + 1 :])
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{shown!r}: expected ':PORT' after {host}")
        return host, _port(rest[1:], shown)
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, _port(port, shown)
    return entry, None


def _port(text: str, shown: str) -> int:
    if not _PORT.fullmatch(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{shown!r}: {text!r} is not a port (1-65535)")
    return int(text)


def _text(host: str, port: int | None) -> str:
    return host if port is None else f"{host}:{port}"


def parse_server_url(server: str) -> ServerUrl | str:
    """A kubeconfig's ``cluster.server`` split for matching, or why it cannot be judged.

    Only plain ``http(s)://HOST[:PORT][/path]`` URLs are accepted: no user info, query or
    fragment, a host that is an IP address or a DNS name, and a path of URL-safe characters, so
    the HTTP client cannot read the URL differently from this judge.
    """
    shown = repr(server[:200])
    parts = urllib.parse.urlsplit(server)
    if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
        return f"{shown} is not an http(s) URL with a host"
    if "@" in parts.netloc:
        return f"{shown} holds user info ('user@'); put credentials in the user section"
    if parts.query or parts.fragment or "?" in server or "#" in server:
        return f"{shown} has a query or fragment; an API server URL has neither"
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]*)*", parts.path):
        return f"{shown} has a path with characters other than letters, digits and -._~/"
    try:
        port = parts.port
    except ValueError:
        return f"{shown} has a port that is not a number from 1 to 65535"
    host = parts.hostname or ""
    address = host_address(host)
    if address is None:
        host = host.removesuffix(".")
        if len(host) > 253 or not _DNS_NAME.fullmatch(host):
            return f"{shown} has a host that is neither an IP address nor a DNS name"
    elif isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return f"{shown} has an IPv6 zone; use a plain address"
    if port == 0:
        return f"{shown} has port 0"
    host = host if address is None else str(address)
    in_url = f"[{host}]" if isinstance(address, ipaddress.IPv6Address) else host
    return ServerUrl(
        scheme=parts.scheme,
        host=host,
        address=address,
        port=port if port is not None else _DEFAULT_PORTS[parts.scheme],
        url=f"{parts.scheme}://{in_url}{'' if port is None else f':{port}'}{parts.path}".rstrip(
            "/"
        ),
    )


def server_allowed(url: ServerUrl, patterns: tuple[ServerPattern, ...]) -> bool:
    """True when one of ``patterns`` matches ``url`` (see the module docstring)."""
    return any(_matches(pattern, url) for pattern in patterns)


def _matches(pattern: ServerPattern, url: ServerUrl) -> bool:
    if pattern.port is not None and pattern.port != url.port:
        return False
    if pattern.address is not None or url.address is not None:
        return pattern.address is not None and pattern.address == url.address
    if pattern.wildcard:
        label, dot, rest = url.host.partition(".")
        return bool(label) and bool(dot) and rest == pattern.name
    return url.host == pattern.name
