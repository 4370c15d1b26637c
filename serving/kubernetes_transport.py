"""How our `kubernetes.aio` clients talk HTTP: environment read once, not per request.

The client's HTTP session trusts the environment, which makes aiohttp look up ``~/.netrc`` and
the proxy variables in a worker thread for each request (two thread hops, about half the cost
of a request to a nearby API server). Kubernetes authenticates with tokens and client
certificates, never netrc, and the proxy for one server does not change while a process runs:
every client we build goes through `resolve_proxy_once` so its session skips both lookups.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any

__all__ = ["resolve_proxy_once"]


def resolve_proxy_once(api: Any) -> Any:
    """Fix ``api``'s (a `kubernetes.aio` ApiClient not yet used) proxy from the kubeconfig or
    the environment (honouring NO_PROXY) and stop its per-request lookups; returns ``api``."""
    configuration = api.configuration
    extra = dict(getattr(configuration, "client_session_kwargs", None) or {})
    extra.setdefault("trust_env", False)
    configuration.client_session_kwargs = extra
    rest = api.rest_client
    if rest.proxy:  # the kubeconfig names one (proxy-url)
        return api
    parts = urllib.parse.urlsplit(str(configuration.host))
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return api
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy:
        rest.proxy = proxy
    return api
