"""Request kubeconfigs are data, never code or paths: the judge every one passes first.

A kubeconfig sent in a request (``clusters[].kubeconfig``, ``cluster.kubeconfig``) comes from
whoever can call the adapter. Handed to a Kubernetes client as it is, it could make the adapter
run a command (``exec``, ``auth-provider``), read a file of the adapter's host and send it to a
server the caller chose (``tokenFile``, ``client-key``), or route traffic through any proxy.
So a request kubeconfig is accepted only when the adapter's operator turned them on
(``--allow-request-kubeconfigs``), holds nothing but inline credentials, and points at a server
the operator allowed (``--allowed-cluster-servers``, see `server_patterns`).

The verdict is a `JudgedKubeconfig`: the few values a connection needs, copied out of the
document. Only `judge_kubeconfig` can make one, and cluster sessions accept nothing else for a
request's cluster, so no request kubeconfig reaches the client's config loader at all. The
adapter's own kubeconfig (``--kubeconfig``, in-cluster) is the operator's and is not judged.

Parsing uses the kit's bounded YAML loader: bounded bytes, nodes, alias expansion and depth.
This module imports only `yaml_documents` and `server_patterns`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.kit.model.server_patterns import (
    ServerPattern,
    ServerUrl,
    is_loopback_host,
    parse_server_url,
    server_allowed,
)
from adapters.kit.model.yaml_documents import ManifestError, load_mapping

__all__ = [
    "ALLOW_FLAG",
    "KUBECONFIG_MAX_BYTES",
    "KUBECONFIG_MAX_NODES",
    "SERVERS_FLAG",
    "JudgedKubeconfig",
    "KubeconfigRefused",
    "Refusal",
    "RequestKubeconfigPolicy",
    "judge_kubeconfig",
]

ALLOW_FLAG = "--allow-request-kubeconfigs"
SERVERS_FLAG = "--allowed-cluster-servers"
KUBECONFIG_MAX_BYTES = 256 * 1024
"""Largest request kubeconfig: one with embedded certificates is a few kilobytes (the request
bounds hold the same number; a test keeps them equal, since this module stays free of
`serving`, which loads gRPC)."""
KUBECONFIG_MAX_NODES = 10_000
"""YAML nodes (aliases counted expanded) a request kubeconfig may hold: a context is ~30."""
_MAX_ALIAS_EXPANSIONS = 1_000
_MAX_DEPTH = 16
_HINT = "send the output of `kubectl config view --raw --minify --flatten`"

_FILE = "names a file on the adapter's host; embed the content as {key}-data instead ({hint})"
_IMPERSONATION = (
    "impersonation is not supported in request kubeconfigs (the client would ignore it and act "
    "as the user itself); send credentials of the identity to act as"
)
_USER_REFUSED = {
    "exec": "exec plugins run a command on the adapter's host; put a token (`token`) or "
    "client-certificate-data/client-key-data in the kubeconfig instead",
    "auth-provider": "auth-provider plugins run provider code on the adapter's host; put a token "
    "(`token`) in the kubeconfig instead",
    "tokenFile": "names a file on the adapter's host; put the token itself in `token`",
    "token-file": "names a file on the adapter's host; put the token itself in `token`",
    "client-certificate": _FILE.format(key="client-certificate", hint=_HINT),
    "client-key": _FILE.format(key="client-key", hint=_HINT),
    "as": _IMPERSONATION,
    "as-uid": _IMPERSONATION,
    "as-groups": _IMPERSONATION,
    "as-user-extra": _IMPERSONATION,
}
_USER_ACCEPTED = (
    "token",
    "username",
    "password",
    "client-certificate-data",
    "client-key-data",
    "extensions",
)
_CLUSTER_REFUSED = {
    "certificate-authority": _FILE.format(key="certificate-authority", hint=_HINT),
    "proxy-url": "would send the adapter's traffic through a proxy the request chose; remove it "
    "(the adapter uses its operator's proxy settings)",
}
_CLUSTER_ACCEPTED = (
    "server",
    "certificate-authority-data",
    "tls-server-name",
    "insecure-skip-tls-verify",
    "disable-compression",
    "extensions",
)
_CONTEXT_ACCEPTED = ("cluster", "user", "namespace", "extensions")
_TOP_ACCEPTED = (
    "apiVersion",
    "kind",
    "clusters",
    "contexts",
    "users",
    "current-context",
    "preferences",
    "extensions",
)
_TOKEN = re.compile(r"[\x21-\x7e]{1,16384}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SEAL = object()


class Refusal(enum.Enum):
    """Why a request kubeconfig is refused; each maps to one gRPC status."""

    INVALID = "invalid"
    """Not data-only, or unusable (INVALID_ARGUMENT)."""
    NOT_ACCEPTED = "not-accepted"
    """The adapter takes no request kubeconfigs (FAILED_PRECONDITION)."""
    SERVER_NOT_ALLOWED = "server-not-allowed"
    """Its server is not in the operator's list (PERMISSION_DENIED)."""


class KubeconfigRefused(Exception):
    """A request kubeconfig the adapter will not use; ``field`` is the request field's path."""

    def __init__(self, reason: Refusal, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.reason = reason
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class RequestKubeconfigPolicy:
    """What the adapter's operator allows (``--allow-request-kubeconfigs``,
    ``--allowed-cluster-servers``); the default accepts none."""

    accept: bool = False
    servers: tuple[ServerPattern, ...] = ()


@dataclass(frozen=True, kw_only=True)
class JudgedKubeconfig:
    """The connection values of a request kubeconfig the judge accepted (and nothing else).

    Made only by `judge_kubeconfig`; constructing one elsewhere raises TypeError.
    """

    server: str
    """The API server URL, rebuilt from its judged parts."""
    context: str
    cluster: str
    user: str
    authorization: str = field(default="", repr=False)
    """The Authorization header value (``Bearer …`` or ``Basic …``), empty for anonymous."""
    certificate_authority: str = field(default="", repr=False)
    """PEM of the CAs to trust; empty trusts the system's."""
    client_certificate: bytes = field(default=b"", repr=False)
    client_key: bytes = field(default=b"", repr=False)
    tls_server_name: str = ""
    identity: str
    """A digest of the document and context: equal kubeconfigs share a cluster session."""
    seal: object = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seal is not _SEAL:
            raise TypeError("a JudgedKubeconfig is made only by judge_kubeconfig")


def judge_kubeconfig(
    text: str,
    *,
    context: str,
    policy: RequestKubeconfigPolicy,
    field: str,
    context_field: str,
) -> JudgedKubeconfig:
    """Judge one request kubeconfig; raises `KubeconfigRefused` saying which part and the fix.

    ``field`` and ``context_field`` are the request's paths of the kubeconfig and context
    (``clusters[0].kubeconfig``); messages name the part of the document
    (``users[1].user.exec``). Every user and cluster entry is judged, not only the context's.
    """
    if not policy.accept:
        raise KubeconfigRefused(
            Refusal.NOT_ACCEPTED,
            field,
            "this adapter does not accept kubeconfigs in requests; leave it empty to use the "
            f"adapter's own cluster, or have the operator start the adapter with {ALLOW_FLAG} "
            f"and {SERVERS_FLAG}",
        )
    document = _Document.load(text, field)
    chosen, user_name, cluster_name = document.context(context, context_field)
    user = document.entry_body("users", user_name, chosen) if user_name else {}
    cluster = document.entry_body("clusters", cluster_name, chosen)
    url = _server(cluster, field, f"cluster {_shown(cluster_name)} (context {_shown(chosen)})")
    if not server_allowed(url, policy.servers):
        raise KubeconfigRefused(
            Refusal.SERVER_NOT_ALLOWED,
            field,
            f"server {url.url[:200]!r} is not one the adapter's operator allows; allowed: "
            f"{_allowed_summary(policy.servers)} (the operator adds hosts with {SERVERS_FLAG})",
        )
    return JudgedKubeconfig(
        server=url.url,
        context=chosen,
        cluster=cluster_name,
        user=user_name,
        authorization=_authorization(user),
        certificate_authority=_pem(cluster, "certificate-authority-data", field).decode("ascii"),
        client_certificate=_pem(user, "client-certificate-data", field),
        client_key=_pem(user, "client-key-data", field),
        tls_server_name=str(cluster.get("tls-server-name") or ""),
        identity=hashlib.sha256(f"{chosen}\0{text}".encode()).hexdigest(),
        seal=_SEAL,
    )


@dataclass(frozen=True, kw_only=True)
class _Document:
    """A request kubeconfig whose every entry passed, and the request field it came in."""

    field: str
    current_context: object
    clusters: list[Mapping[str, Any]]
    contexts: list[Mapping[str, Any]]
    users: list[Mapping[str, Any]]

    @classmethod
    def load(cls, text: str, field: str) -> _Document:
        """Parse with the bounded loader, then judge the top level and every entry."""
        try:
            config = load_mapping(
                text,
                max_bytes=KUBECONFIG_MAX_BYTES,
                max_alias_expansions=_MAX_ALIAS_EXPANSIONS,
                max_depth=_MAX_DEPTH,
                max_nodes=KUBECONFIG_MAX_NODES,
                source="the kubeconfig",
            )
        except ManifestError as exc:
            raise _invalid(field, f"{str(exc)[:200]}; {_HINT}") from None
        _only(config, _TOP_ACCEPTED, "", field)
        document = cls(
            field=field,
            current_context=config.get("current-context"),
            clusters=_section(config, "clusters", field),
            contexts=_section(config, "contexts", field),
            users=_section(config, "users", field, optional=True),
        )
        document.judge_entries()
        return document

    def judge_entries(self) -> None:
        """Every user and cluster entry is judged, not only the context's."""
        for index, entry in enumerate(self.users):
            _judge_user(entry, f"users[{index}].user", self.field)
        for index, entry in enumerate(self.clusters):
            _judge_cluster(entry, f"clusters[{index}].cluster", self.field)
        for index, entry in enumerate(self.contexts):
            where = f"contexts[{index}]"
            body = _body(entry, "context", where, self.field)
            _only(body, _CONTEXT_ACCEPTED, f"{where}.context", self.field)

    def context(self, requested: str, context_field: str) -> tuple[str, str, str]:
        """Names of the context to use (the requested one, else current-context), its user
        (empty for anonymous) and its cluster."""
        chosen = requested or self.current_context or ""
        if not isinstance(chosen, str) or not chosen:
            raise _invalid(
                self.field,
                f"has no current-context and {context_field} is empty; set current-context in "
                "the kubeconfig or name a context in the request",
            )
        found = _named(self.contexts, "contexts", chosen)
        if found is None:
            raise _invalid(
                context_field if requested else self.field,
                _missing(self.contexts, "contexts", chosen),
            )
        body = found.get("context") or {}
        user_name = body.get("user") or ""
        cluster_name = body.get("cluster")
        if not isinstance(user_name, str) or not isinstance(cluster_name, str) or not cluster_name:
            raise _invalid(
                self.field,
                f"context {_shown(chosen)} must name a cluster (and may name a user) as strings",
            )
        return chosen, user_name, cluster_name

    def entry_body(self, section: str, name: str, chosen: str) -> Mapping[str, Any]:
        """The ``user`` or ``cluster`` body of the entry ``name`` in ``users`` or ``clusters``."""
        entries = self.users if section == "users" else self.clusters
        entry = _named(entries, section, name)
        if entry is None:
            raise _invalid(
                self.field, f"context {_shown(chosen)}: {_missing(entries, section, name)}"
            )
        body: Mapping[str, Any] = entry.get(section.removesuffix("s")) or {}
        return body


def _invalid(field: str, message: str) -> KubeconfigRefused:
    return KubeconfigRefused(Refusal.INVALID, field, message)


def _shown(name: str) -> str:
    return repr(name[:60])


def _only(
    section: Mapping[str, Any],
    accepted: tuple[str, ...],
    where: str,
    field: str,
    refused: Mapping[str, str] | None = None,
) -> None:
    """Refuse keys of ``section`` that are in ``refused`` (with its reason) or not in
    ``accepted``."""
    for key in section:
        reason = (refused or {}).get(key)
        if reason is not None:
            raise _invalid(field, f"{where}.{key}: {reason}")
        if key not in accepted:
            path = f"{where}.{key[:60]}" if where else key[:60]
            raise _invalid(
                field,
                f"{path}: is not a field meshplane accepts in request kubeconfigs (accepted "
                f"here: {', '.join(accepted)}); {_HINT}",
            )


def _section(
    config: Mapping[str, Any], section: str, field: str, *, optional: bool = False
) -> list[Mapping[str, Any]]:
    """The entries of ``clusters``, ``contexts`` or ``users``: mappings with unique names."""
    raw = config.get(section)
    if raw is None and optional:
        return []
    if not isinstance(raw, list):
        shown = "missing" if raw is None else f"a {type(raw).__name__}"
        raise _invalid(
            field, f"`{section}` is {shown}, not a list; this does not look like a kubeconfig"
        )
    seen: dict[str, int] = {}
    for position, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise _invalid(field, f"{section}[{position}] is not a mapping with a string `name`")
        name = entry["name"]
        if name in seen:
            raise _invalid(
                field,
                f"{section}[{position}].name: {_shown(name)} is also the name of "
                f"{section}[{seen[name]}]; names must be unique",
            )
        seen[name] = position
    return raw


def _body(entry: Mapping[str, Any], key: str, where: str, field: str) -> Mapping[str, Any]:
    for extra in entry:
        if extra not in ("name", key):
            raise _invalid(field, f"{where}.{extra[:60]}: unexpected; an entry has name and {key}")
    body = entry.get(key)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise _invalid(field, f"{where}.{key}: is not a mapping")
    return body


def _judge_user(entry: Mapping[str, Any], where: str, field: str) -> None:
    user = _body(entry, "user", where.removesuffix(".user"), field)
    _only(user, _USER_ACCEPTED, where, field, _USER_REFUSED)
    for key in ("token", "username", "password", "client-certificate-data", "client-key-data"):
        if key in user and not isinstance(user[key], str):
            raise _invalid(field, f"{where}.{key}: must be a string")
    token = user.get("token")
    if token is not None and not _TOKEN.fullmatch(token):
        raise _invalid(
            field, f"{where}.token: must be printable ASCII without spaces (at most 16384)"
        )
    if ("username" in user) != ("password" in user):
        raise _invalid(field, f"{where}: basic authentication needs both username and password")
    username = user.get("username", "")
    if ":" in username or _CONTROL.search(username) or _CONTROL.search(user.get("password", "")):
        raise _invalid(
            field,
            f"{where}: username and password may hold no control characters (username no ':')",
        )
    if token and "username" in user:
        raise _invalid(field, f"{where}: send either a token or a username and password, not both")
    if ("client-certificate-data" in user) != ("client-key-data" in user):
        raise _invalid(field, f"{where}: client-certificate-data and client-key-data go together")
    for key in ("client-certificate-data", "client-key-data"):
        _pem(user, key, field, where)


def _judge_cluster(entry: Mapping[str, Any], where: str, field: str) -> None:
    cluster = _body(entry, "cluster", where.removesuffix(".cluster"), field)
    _only(cluster, _CLUSTER_ACCEPTED, where, field, _CLUSTER_REFUSED)
    skip = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(skip, bool):
        raise _invalid(field, f"{where}.insecure-skip-tls-verify: must be true or false")
    if skip:
        raise _invalid(
            field,
            f"{where}.insecure-skip-tls-verify: turns off the server certificate check; embed "
            "the cluster's CA as certificate-authority-data instead",
        )
    name = cluster.get("tls-server-name", "")
    if not isinstance(name, str) or len(name) > 253 or _CONTROL.search(name):
        raise _invalid(field, f"{where}.tls-server-name: must be a host name")
    _pem(cluster, "certificate-authority-data", field, where)
    _server(cluster, field, where)


def _server(cluster: Mapping[str, Any], field: str, where: str) -> ServerUrl:
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise _invalid(field, f"{where} has no server URL (cluster.server)")
    url = parse_server_url(server)
    if isinstance(url, str):
        raise _invalid(field, f"{where}.server: {url}")
    if url.scheme == "http" and not is_loopback_host(url.host):
        raise _invalid(
            field,
            f"{where}.server: {url.url[:200]!r} would send credentials unencrypted; use https "
            "(http is accepted for loopback addresses only)",
        )
    return url


_PEM_MARKERS = {
    "certificate-authority-data": b"-----BEGIN CERTIFICATE-----",
    "client-certificate-data": b"-----BEGIN CERTIFICATE-----",
    "client-key-data": b"PRIVATE KEY-----",
}


def _pem(section: Mapping[str, Any], key: str, field: str, where: str = "") -> bytes:
    """The base64-decoded PEM under ``key`` (empty when absent)."""
    raw = section.get(key)
    if raw is None or raw == "":
        return b""
    path = f"{where}.{key}" if where else key
    if not isinstance(raw, str):
        raise _invalid(field, f"{path}: must be a base64 string")
    try:
        decoded = base64.b64decode("".join(raw.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(field, f"{path}: is not base64 ({_HINT})") from None
    if _PEM_MARKERS[key] not in decoded or not decoded.isascii():
        raise _invalid(field, f"{path}: does not decode to PEM ({_PEM_MARKERS[key].decode()})")
    return decoded


def _authorization(user: Mapping[str, Any]) -> str:
    token = user.get("token")
    if token:
        return f"Bearer {token}"
    if "username" in user:
        pair = f"{user['username']}:{user['password']}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")
    return ""


def _named(entries: list[Mapping[str, Any]], section: str, name: str) -> Mapping[str, Any] | None:
    for entry in entries:
        if entry["name"] == name:
            return entry
    return None


def _missing(entries: list[Mapping[str, Any]], section: str, name: str) -> str:
    known = ", ".join(_shown(e["name"]) for e in entries[:10]) or "none"
    return f"{section} has no entry named {_shown(name)} (it has {known})"


def _allowed_summary(servers: tuple[ServerPattern, ...]) -> str:
    if not servers:
        return "none"
    shown = ", ".join(p.text for p in servers[:5])
    return shown + (f" and {len(servers) - 5} more" if len(servers) > 5 else "")
