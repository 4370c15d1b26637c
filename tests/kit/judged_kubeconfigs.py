"""Judged request kubeconfigs for tests of what sits below the judge (sessions, executors)."""

from __future__ import annotations

import urllib.parse

from adapters.kit.model.request_kubeconfigs import (
    ALLOW_FLAG,
    SERVERS_FLAG,
    JudgedKubeconfig,
    RequestKubeconfigPolicy,
    judge_kubeconfig,
)
from adapters.kit.model.server_patterns import parse_server_patterns

LOOPBACK_SERVERS = "127.0.0.1,[::1],localhost"
"""What tests allow: kubesim and the other servers they start listen on loopback."""


def loopback_policy(servers: str = LOOPBACK_SERVERS) -> RequestKubeconfigPolicy:
    """Request kubeconfigs accepted for ``servers`` (default: any loopback port)."""
    return RequestKubeconfigPolicy(accept=True, servers=parse_server_patterns(servers))


def judged(text: str, *, context: str = "", servers: str = LOOPBACK_SERVERS) -> JudgedKubeconfig:
    """``text`` through the judge, as the runner does for ``clusters[0]``."""
    return judge_kubeconfig(
        text,
        context=context,
        policy=loopback_policy(servers),
        field="clusters[0].kubeconfig",
        context_field="clusters[0].context",
    )


def accepting_flags(*server_urls: str) -> list[str]:
    """`meshplane adapter` flags accepting request kubeconfigs for exactly ``server_urls``'
    host:port (e.g. kubesim's URL)."""
    hosts = ",".join(urllib.parse.urlsplit(url).netloc for url in server_urls)
    return [ALLOW_FLAG, SERVERS_FLAG, hosts]
