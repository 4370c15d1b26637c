"""--allowed-cluster-servers patterns: exact host, one-label wildcard, addresses, ports."""

from __future__ import annotations

import pytest

from adapters.kit.model.server_patterns import (
    ServerUrl,
    parse_server_patterns,
    parse_server_url,
    server_allowed,
)


def url(text: str) -> ServerUrl:
    parsed = parse_server_url(text)
    assert isinstance(parsed, ServerUrl), parsed
    return parsed


@pytest.mark.parametrize(
    ("patterns", "server", "allowed"),
    [
        ("api.corp.example", "https://api.corp.example:6443", True),
        ("api.corp.example", "https://API.Corp.Example./k8s/clusters/c-1", True),
        ("api.corp.example", "https://api.corp.example.evil.test", False),
        ("api.corp.example", "https://xapi.corp.example", False),
        ("*.corp.example", "https://api.corp.example", True),
        ("*.corp.example", "https://corp.example", False),
        ("*.corp.example", "https://a.b.corp.example", False),
        ("*.corp.example", "https://api.corp.example.evil.test", False),
        ("*.corp.example:6443", "https://api.corp.example:6443", True),
        ("*.corp.example:6443", "https://api.corp.example", False),
        ("api.corp.example:443", "https://api.corp.example", True),
        ("127.0.0.1:6443", "https://127.0.0.1:6443", True),
        ("127.0.0.1:6443", "https://127.0.0.1:6444", False),
        ("127.0.0.1", "http://127.0.0.1:8080", True),
        ("127.0.0.1", "http://localhost:8080", False),
        ("localhost", "http://127.0.0.1:8080", False),
        ("[::1]", "https://[::1]:6443", True),
        ("[::1]:6443", "https://[0:0:0:0:0:0:0:1]:6443", True),
        ("[::1]", "https://127.0.0.1", False),
        ("10.0.0.7", "https://10.0.0.70", False),
        ("a.example, b.example ,", "https://b.example", True),
        ("", "https://b.example", False),
    ],
)
def test_matching_is_exact(patterns: str, server: str, allowed: bool) -> None:
    assert server_allowed(url(server), parse_server_patterns(patterns)) is allowed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("*", "no pattern for every server"),
        ("*.*.example", "'*' may only stand for the first label"),
        ("api.*", "'*' may only stand for the first label"),
        ("https://api.example", "not a URL"),
        ("api.example/path", "not a URL"),
        ("::1", "write IPv6 addresses in brackets"),
        ("[::1", "closing ']'"),
        ("[10.0.0.1]", "is not an IPv6 address"),
        ("[::1]6443", "expected ':PORT'"),
        ("api.example:http", "is not a port"),
        ("api.example:0", "is not a port"),
        ("api.example:70000", "is not a port"),
        ("bad_host!", "is not a host name"),
        ("bücher.example", "xn-- form"),
    ],
)
def test_patterns_that_are_not_patterns_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_server_patterns(text)
    assert fragment in str(caught.value), str(caught.value)


def test_urls_are_rebuilt_from_their_judged_parts() -> None:
    assert url("https://API.Example:6443/k8s/c-1/").url == "https://api.example:6443/k8s/c-1"
    assert url("https://[0::1]:6443").url == "https://[::1]:6443"
    assert url("http://127.0.0.1").port == 80
    assert url("https://10.0.0.1").port == 443
    assert parse_server_url("https://[fe80::1%25eth0]:6443") == (
        "'https://[fe80::1%25eth0]:6443' has an IPv6 zone; use a plain address"
    )
