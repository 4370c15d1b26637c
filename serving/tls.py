"""Transport security for every meshplane server and client: TLS or mTLS from the start.

Servers take ``--tls-cert``/``--tls-key`` and optionally ``--tls-client-ca`` (which turns on mTLS:
a client without a certificate signed by that CA is refused during the handshake). Clients dial
with TLS when given a CA, present a certificate when given one, and fall back to plaintext only
on loopback unless ``allow_insecure`` is set, so a mis-configured deployment fails loudly
instead of sending mesh credentials (kubeconfigs travel in requests) in the clear.
"""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import structlog

_log = structlog.get_logger(__name__)

ALLOW_INSECURE_FLAG = "--allow-insecure"


class InsecureTransportError(ValueError):
    """Plaintext was requested to a host that is not loopback and nobody allowed it."""


@dataclass(frozen=True, kw_only=True)
class TlsConfig:
    """Server side: certificate chain and key, plus the CA that client certificates must chain to.

    ``client_ca_path`` set means mutual TLS: clients must present a certificate signed by it.
    """

    cert_path: Path
    key_path: Path
    client_ca_path: Path | None = None

    @property
    def mutual(self) -> bool:
        """True when clients must present a certificate."""
        return self.client_ca_path is not None


@dataclass(frozen=True, kw_only=True)
class ClientTls:
    """Client side: CA to verify the server with, and our own certificate for mTLS (optional).

    ``ca_path`` None means the system roots. ``server_name`` overrides the name checked against
    the server certificate (for dialling an IP whose certificate names a DNS name).
    """

    ca_path: Path | None = None
    cert_path: Path | None = None
    key_path: Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_path is None) != (self.key_path is None):
            raise ValueError("a client certificate needs both cert_path and key_path")


def server_credentials(cfg: TlsConfig) -> Any:
    """Build ``grpc.ServerCredentials``; with a client CA, client certificates are required."""
    root = cfg.client_ca_path.read_bytes() if cfg.client_ca_path is not None else None
    return grpc.ssl_server_credentials(
        [(cfg.key_path.read_bytes(), cfg.cert_path.read_bytes())],
        root_certificates=root,
        require_client_auth=root is not None,
    )


def channel_credentials(
    *, ca_path: Path | None, cert_path: Path | None = None, key_path: Path | None = None
) -> Any:
    """Build ``grpc.ChannelCredentials``; cert and key together make it a mutual-TLS client."""
    if (cert_path is None) != (key_path is None):
        raise ValueError("a client certificate needs both cert_path and key_path")
    return grpc.ssl_channel_credentials(
        root_certificates=ca_path.read_bytes() if ca_path is not None else None,
        private_key=key_path.read_bytes() if key_path is not None else None,
        certificate_chain=cert_path.read_bytes() if cert_path is not None else None,
    )


def host_of(address: str) -> str:
    """Host part of a gRPC target: ``host:port``, ``[v6]:port``, ``dns:///host:port``."""
    target = address
    for scheme in ("dns:///", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
    if target.startswith("["):
        return target[1 : target.index("]")]
    if target.count(":") > 1:  # a bare IPv6 address without a port
        return target
    return target.rsplit(":", 1)[0] if ":" in target else target


def is_loopback(address: str) -> bool:
    """True for unix sockets, ``localhost`` and loopback IPs: plaintext that stays on the host."""
    if address.startswith(("unix:", "unix-abstract:")):
        return True
    host = host_of(address)
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dial(
    address: str,
    *,
    tls: ClientTls | None,
    allow_insecure: bool = False,
    max_message_bytes: int | None = None,
    keepalive_seconds: float | None = 30.0,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[Any] | None = None,
) -> Any:
    """Open a ``grpc.aio.Channel``: TLS when ``tls`` is given, plaintext only on loopback.

    Plaintext to any other host raises :class:`InsecureTransportError` unless ``allow_insecure``
    is True (``--allow-insecure`` on the command line). Keepalive pings (never more often than
    the servers' 10 s minimum) notice a vanished peer on long-lived event streams.
    """
    opts: list[tuple[str, Any]] = []
    if keepalive_seconds is not None:
        opts += [
            ("grpc.keepalive_time_ms", int(keepalive_seconds * 1000)),
            ("grpc.keepalive_timeout_ms", 10_000),
        ]
    opts += list(options)
    if max_message_bytes is not None:
        opts += [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
    if tls is None:
        if not is_loopback(address):
            if not allow_insecure:
                raise InsecureTransportError(
                    f"refusing plaintext gRPC to non-loopback address {address!r}: configure TLS "
                    f"(--tls-ca, and --tls-cert/--tls-key for mTLS) or pass {ALLOW_INSECURE_FLAG} "
                    "(allow_insecure=True) to accept an unencrypted connection"
                )
            _log.warning("grpc.dial_insecure", address=address)
        return grpc.aio.insecure_channel(address, options=opts, interceptors=interceptors)
    if tls.server_name is not None:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    creds = channel_credentials(ca_path=tls.ca_path, cert_path=tls.cert_path, key_path=tls.key_path)
    return grpc.aio.secure_channel(address, creds, options=opts, interceptors=interceptors)


def add_server_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--tls-cert``, ``--tls-key`` and ``--tls-client-ca`` to a server command."""
    group = parser.add_argument_group("transport security")
    group.add_argument("--tls-cert", type=Path, help="PEM certificate chain served to clients")
    group.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    group.add_argument(
        "--tls-client-ca",
        type=Path,
        help="PEM CA bundle; when set, clients must present a certificate it signed (mTLS)",
    )


def server_tls_from_args(args: argparse.Namespace) -> TlsConfig | None:
    """Turn parsed ``--tls-*`` server flags into a :class:`TlsConfig` (None: plaintext)."""
    return server_tls(cert=args.tls_cert, key=args.tls_key, client_ca=args.tls_client_ca)


def server_tls(*, cert: Path | None, key: Path | None, client_ca: Path | None) -> TlsConfig | None:
    """The server TLS rule however the paths were given: none is plaintext, a pair is TLS.

    ValueError when the key or certificate stands alone, or a client CA comes without them.
    """
    if cert is None and key is None:
        if client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise ValueError("--tls-cert and --tls-key go together")
    return TlsConfig(cert_path=cert, key_path=key, client_ca_path=client_ca)


def add_client_tls_arguments(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """Add client flags (``--{prefix}tls-ca``, ``-cert``, ``-key``, ``-server-name``, insecure).

    ``prefix`` lets one process that is both server and client (the coordinator) keep its
    outbound flags apart, e.g. ``prefix="adapter-"`` gives ``--adapter-tls-ca``.
    """
    group = parser.add_argument_group(f"{prefix}client transport security")
    group.add_argument(f"--{prefix}tls-ca", type=Path, help="PEM CA that signs the server")
    group.add_argument(f"--{prefix}tls-cert", type=Path, help="PEM client certificate (mTLS)")
    group.add_argument(f"--{prefix}tls-key", type=Path, help="PEM key for the client cert")
    group.add_argument(
        f"--{prefix}tls-server-name", help="name to verify in the server certificate"
    )
    group.add_argument(
        f"--{prefix}allow-insecure",
        action="store_true",
        help="allow plaintext to a non-loopback address",
    )


def client_tls_from_args(args: argparse.Namespace, *, prefix: str = "") -> ClientTls | None:
    """Turn parsed client flags into :class:`ClientTls`; None when no TLS flag was given."""
    attr = prefix.replace("-", "_")
    ca: Path | None = getattr(args, f"{attr}tls_ca")
    cert: Path | None = getattr(args, f"{attr}tls_cert")
    key: Path | None = getattr(args, f"{attr}tls_key")
    name: str | None = getattr(args, f"{attr}tls_server_name")
    if ca is None and cert is None and key is None and name is None:
        return None
    return ClientTls(ca_path=ca, cert_path=cert, key_path=key, server_name=name)
