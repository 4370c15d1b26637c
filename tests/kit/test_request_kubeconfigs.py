"""The request kubeconfig judge: data only, operator's switch, allowed servers, bounded parsing.

Every refusal names the request field, the part of the document and the fix; hostile documents
(bombs, huge, deep, not a mapping, duplicate names) are refused by the bounded loader.
"""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.kit.model.request_kubeconfigs import (
    ALLOW_FLAG,
    KUBECONFIG_MAX_BYTES,
    KUBECONFIG_MAX_NODES,
    SERVERS_FLAG,
    JudgedKubeconfig,
    KubeconfigRefused,
    Refusal,
    RequestKubeconfigPolicy,
    judge_kubeconfig,
)
from adapters.kit.model.server_patterns import (
    ServerUrl,
    parse_server_patterns,
    parse_server_url,
    server_allowed,
)
from kubesim.kubeconfig import generate_certificate, write_kubeconfig
from tests.fixtures_paths import PROJECT_ROOT

POLICY = RequestKubeconfigPolicy(
    accept=True,
    servers=parse_server_patterns("*.example:6443,west.example,127.0.0.1,[::1]"),
)
FIELD = "clusters[1].kubeconfig"
CERTIFICATE = generate_certificate("127.0.0.1")
CA_DATA = base64.b64encode(CERTIFICATE.ca_pem).decode()
CERT_DATA = base64.b64encode(CERTIFICATE.cert_pem).decode()
KEY_DATA = base64.b64encode(CERTIFICATE.key_pem).decode()


def kubeconfig(
    *, user: dict[str, Any] | None = None, cluster: dict[str, Any] | None = None, **top: Any
) -> dict[str, Any]:
    """A well-formed kubeconfig; ``user``/``cluster`` add keys to the first entries, ``top``
    replaces top-level keys."""
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "east", "cluster": {"server": "https://east.example:6443", **(cluster or {})}},
            {"name": "west", "cluster": {"server": "https://west.example"}},
        ],
        "users": [
            {"name": "admin", "user": {"token": "t0k3n", **(user or {})}},
            {"name": "viewer", "user": {"token": "v"}},
        ],
        "contexts": [
            {"name": "e", "context": {"cluster": "east", "user": "admin"}},
            {"name": "w", "context": {"cluster": "west", "user": "viewer", "namespace": "x"}},
        ],
        "current-context": "e",
    }
    config.update(top)
    return config


def judge(
    config: str | dict[str, Any],
    context: str = "",
    policy: RequestKubeconfigPolicy = POLICY,
) -> JudgedKubeconfig:
    text = config if isinstance(config, str) else yaml.safe_dump(config)
    return judge_kubeconfig(
        text, context=context, policy=policy, field=FIELD, context_field="clusters[1].context"
    )


def refused(
    config: str | dict[str, Any],
    context: str = "",
    policy: RequestKubeconfigPolicy = POLICY,
) -> KubeconfigRefused:
    with pytest.raises(KubeconfigRefused) as caught:
        judge(config, context, policy)
    return caught.value


def test_a_data_only_kubeconfig_is_judged_into_connection_values() -> None:
    judged = judge(kubeconfig(cluster={"certificate-authority-data": CA_DATA}))
    assert judged.server == "https://east.example:6443"
    assert (judged.context, judged.cluster, judged.user) == ("e", "east", "admin")
    assert judged.authorization == "Bearer t0k3n"
    assert judged.certificate_authority == CERTIFICATE.ca_pem.decode()
    other = judge(kubeconfig(), context="w")
    assert (other.server, other.authorization) == ("https://west.example", "Bearer v")
    assert other.identity != judged.identity
    assert "t0k3n" not in repr(judged) and "BEGIN" not in repr(judged)


def test_client_certificates_and_basic_auth_are_data_too(tmp_path: Path) -> None:
    users = [
        {
            "name": "admin",
            "user": {"client-certificate-data": CERT_DATA, "client-key-data": KEY_DATA},
        }
    ]
    judged = judge(kubeconfig(users=users))
    assert judged.client_certificate == CERTIFICATE.cert_pem
    assert judged.client_key == CERTIFICATE.key_pem
    assert judged.authorization == ""
    basic = judge(kubeconfig(users=[{"name": "admin", "user": {"username": "u", "password": "p"}}]))
    assert basic.authorization == "Basic " + base64.b64encode(b"u:p").decode()
    anonymous = kubeconfig(contexts=[{"name": "e", "context": {"cluster": "east"}}])
    del anonymous["users"]
    assert judge(anonymous).authorization == ""
    written = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:6443")
    assert judge(written.read_text()).server == "http://127.0.0.1:6443"


def test_a_judged_kubeconfig_cannot_be_made_by_hand() -> None:
    with pytest.raises(TypeError, match="only by judge_kubeconfig"):
        JudgedKubeconfig(server="https://x", context="", cluster="", user="", identity="")


def test_off_unless_the_operator_turns_them_on() -> None:
    problem = refused(kubeconfig(), policy=RequestKubeconfigPolicy())
    assert problem.reason is Refusal.NOT_ACCEPTED
    assert problem.field == FIELD
    assert "does not accept kubeconfigs in requests" in problem.message
    assert ALLOW_FLAG in problem.message and SERVERS_FLAG in problem.message
    # Refused before parsing: even a bomb costs nothing.
    assert refused(billion_laughs(9), policy=RequestKubeconfigPolicy()).reason is (
        Refusal.NOT_ACCEPTED
    )


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ("https://east.example:6443", True),
        ("https://api.example:6443", True),
        ("https://east.example:443", False),
        ("https://a.b.example:6443", False),
        ("https://example:6443", False),
        ("https://west.example", True),
        ("https://west.example:8443", True),
        ("https://WEST.example./", True),
        ("https://evil.test", False),
        ("https://127.0.0.1:6443", True),
        ("http://127.0.0.1:8080", True),
        ("https://[::1]:6443", True),
        ("https://[0:0::1]:6443", True),
        ("https://localhost:6443", False),
        ("https://10.0.0.1:6443", False),
    ],
)
def test_only_servers_the_operator_allows(server: str, allowed: bool) -> None:
    config = kubeconfig(cluster={"server": server})
    if allowed:
        assert judge(config).server.startswith(server.split(":", maxsplit=1)[0])
        return
    problem = refused(config)
    assert problem.reason is Refusal.SERVER_NOT_ALLOWED, problem.message
    assert "is not one the adapter's operator allows" in problem.message
    assert SERVERS_FLAG in problem.message


def test_a_long_server_url_is_quoted_short() -> None:
    server = "https://" + "a" * 60 + "." + "b" * 60 + "." + "c" * 60 + ".evil.test/" + "p" * 5000
    problem = refused(kubeconfig(cluster={"server": server}))
    assert problem.reason is Refusal.SERVER_NOT_ALLOWED
    assert len(problem.message) < 500


@pytest.mark.parametrize(
    ("config", "path", "fix"),
    [
        (
            kubeconfig(user={"exec": {"command": "touch", "apiVersion": "x"}}),
            "users[0].user.exec",
            "exec plugins run a command",
        ),
        (
            kubeconfig(users=[{"name": "admin", "user": {}}, {"name": "v", "user": {"exec": {}}}]),
            "users[1].user.exec",
            "put a token",
        ),
        (
            kubeconfig(user={"auth-provider": {"name": "oidc", "config": {}}}),
            "users[0].user.auth-provider",
            "auth-provider plugins",
        ),
        (kubeconfig(user={"tokenFile": "/etc/shadow"}), "users[0].user.tokenFile", "`token`"),
        (kubeconfig(user={"token-file": "/etc/shadow"}), "users[0].user.token-file", "`token`"),
        (
            kubeconfig(user={"client-certificate": "/k.crt", "client-key": "/k.key"}),
            "users[0].user.client-certificate",
            "client-certificate-data",
        ),
        (kubeconfig(user={"client-key": "/k.key"}), "users[0].user.client-key", "client-key-data"),
        (
            kubeconfig(cluster={"certificate-authority": "/ca.crt"}),
            "clusters[0].cluster.certificate-authority",
            "certificate-authority-data",
        ),
        (
            kubeconfig(cluster={"proxy-url": "http://10.0.0.9:3128"}),
            "clusters[0].cluster.proxy-url",
            "proxy",
        ),
        (kubeconfig(user={"as": "system:admin"}), "users[0].user.as", "impersonation"),
        (kubeconfig(user={"as-groups": ["system:masters"]}), "users[0].user.as-groups", "imperson"),
        (kubeconfig(user={"password-command": "x"}), "users[0].user.password-command", "accepted"),
        (kubeconfig(cluster={"socks": 1}), "clusters[0].cluster.socks", "accepted here"),
        (
            kubeconfig(cluster={"insecure-skip-tls-verify": True}),
            "clusters[0].cluster.insecure-skip-tls-verify",
            "certificate-authority-data",
        ),
        (
            kubeconfig(cluster={"insecure-skip-tls-verify": "yes"}),
            "clusters[0].cluster.insecure-skip-tls-verify",
            "true or false",
        ),
        (kubeconfig(plugins={"x": 1}), "plugins", "accepted here"),
        (
            kubeconfig(contexts=[{"name": "e", "context": {"cluster": "east", "as": "x"}}]),
            "contexts[0].context.as",
            "accepted here",
        ),
        (kubeconfig(user={"token": "a b"}), "users[0].user.token", "printable ASCII"),
        (kubeconfig(user={"token": "t\r\nX-Evil: 1"}), "users[0].user.token", "printable"),
        (kubeconfig(user={"token": 7}), "users[0].user.token", "must be a string"),
        (kubeconfig(user={"username": "u"}), "users[0].user", "both username and password"),
        (
            kubeconfig(user={"username": "u", "password": "p"}),
            "users[0].user",
            "either a token or a username",
        ),
        (kubeconfig(user={"client-key-data": KEY_DATA}), "users[0].user", "go together"),
        (
            kubeconfig(user={"client-certificate-data": "%%%", "client-key-data": KEY_DATA}),
            "users[0].user.client-certificate-data",
            "is not base64",
        ),
        (
            kubeconfig(cluster={"certificate-authority-data": base64.b64encode(b"hi").decode()}),
            "clusters[0].cluster.certificate-authority-data",
            "does not decode to PEM",
        ),
    ],
)
def test_code_paths_and_unknown_fields_are_refused(
    config: dict[str, Any], path: str, fix: str
) -> None:
    problem = refused(config)
    assert problem.reason is Refusal.INVALID
    assert problem.field == FIELD
    assert problem.message.startswith(f"{path}:") or f" {path}" in problem.message, problem.message
    assert fix in problem.message, problem.message
    assert str(problem).startswith(f"{FIELD}: ")


@pytest.mark.parametrize(
    ("server", "fix"),
    [
        ("http://east.example:6443", "use https"),
        ("https://user:pw@east.example:6443", "user info"),
        ("https://east.example:6443/?x=1", "query or fragment"),
        ("https://east.example:6443/a\\b", "path"),
        ("file:///etc/passwd", "not an http(s) URL"),
        ("https://e:99999", "port"),
        ("https://ex ample:6443", "neither an IP address nor a DNS name"),
    ],
)
def test_server_urls_the_client_could_read_differently_are_refused(server: str, fix: str) -> None:
    problem = refused(kubeconfig(cluster={"server": server}))
    assert problem.reason is Refusal.INVALID
    assert problem.message.startswith("clusters[0].cluster.server: "), problem.message
    assert fix in problem.message, problem.message


def test_every_entry_is_judged_not_only_the_chosen_context() -> None:
    users = [
        {"name": "admin", "user": {"token": "t"}},
        {"name": "unused", "user": {"exec": {"command": "sh"}}},
    ]
    problem = refused(kubeconfig(users=users))
    assert problem.message.startswith("users[1].user.exec:")


def billion_laughs(levels: int) -> str:
    lines = ["apiVersion: v1", "kind: Config", "l0: &l0 lol"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def many_nodes(count: int) -> str:
    return "apiVersion: v1\nkind: Config\nclusters: [" + ", ".join(["0"] * count) + "]\n"


def nested(depth: int) -> str:
    return "apiVersion: v1\nclusters: " + "[" * depth + "]" * depth + "\n"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (billion_laughs(9), "billion laughs"),
        (many_nodes(KUBECONFIG_MAX_NODES + 10), "max_nodes"),
        ("a: " + "x" * (KUBECONFIG_MAX_BYTES + 1), "more than the limit"),
        (nested(100), "nesting deeper"),
        ("a: &a [*a]\n", "recursive aliases"),
        ("{{{ not yaml", "not valid YAML"),
        ("- a\n- list\n", "must be exactly one YAML mapping"),
        ("just a string\n", "must be exactly one YAML mapping"),
        ("a: 1\n---\nb: 2\n", "must be exactly one YAML mapping"),
        ("", "must be exactly one YAML mapping"),
        ("secret: yes\n", "secret: is not a field"),
        ("clusters: []\nclusters: []\n", "duplicate key"),
        ("clusters: !!python/object:os.system {}\n", "not valid YAML"),
        ("clusters: !!binary aGk=\n", "is a str, not a list"),
        (yaml.safe_dump(kubeconfig(contexts={"e": "east"})), "`contexts` is a dict, not a list"),
        (yaml.safe_dump(kubeconfig(users=[{"user": {}}])), "users[0] is not a mapping"),
        (
            yaml.safe_dump(
                kubeconfig(users=[{"name": "a", "user": {"token": "1"}}, {"name": "a", "user": {}}])
            ),
            "users[1].name: 'a' is also the name of users[0]",
        ),
        (
            yaml.safe_dump(
                kubeconfig(
                    clusters=[
                        {"name": "east", "cluster": {"server": "https://east.example:6443"}},
                        {"name": "east", "cluster": {"server": "https://evil.test"}},
                    ]
                )
            ),
            "clusters[1].name: 'east' is also the name of clusters[0]",
        ),
        (
            yaml.safe_dump(
                kubeconfig(
                    contexts=[
                        {"name": "e", "context": {"cluster": "east"}},
                        {"name": "e", "context": {"cluster": "west"}},
                    ]
                )
            ),
            "contexts[1].name: 'e' is also the name",
        ),
        (yaml.safe_dump(kubeconfig(**{"current-context": None})), "has no current-context"),
        (yaml.safe_dump(kubeconfig(**{"current-context": "gone"})), "no entry named 'gone'"),
        (
            yaml.safe_dump(kubeconfig(contexts=[{"name": "e", "context": {"cluster": "north"}}])),
            "context 'e': clusters has no entry named 'north' (it has 'east', 'west')",
        ),
        (
            yaml.safe_dump(
                kubeconfig(contexts=[{"name": "e", "context": {"cluster": "east", "user": "r"}}])
            ),
            "context 'e': users has no entry named 'r'",
        ),
        (yaml.safe_dump(kubeconfig(contexts=[{"name": "e"}])), "must name a cluster"),
        (yaml.safe_dump(kubeconfig(contexts=[{"name": "e", "context": 3}])), "not a mapping"),
        (yaml.safe_dump(kubeconfig(clusters=[{"name": "east"}])), "has no server URL"),
    ],
)
def test_hostile_and_broken_documents_are_refused(text: str, fragment: str) -> None:
    problem = refused(text)
    assert problem.reason is Refusal.INVALID
    assert problem.field == FIELD
    assert fragment in problem.message, problem.message
    assert len(problem.message) < 600


def test_a_requested_context_that_is_missing_names_the_context_field() -> None:
    problem = refused(kubeconfig(), context="south")
    assert problem.field == "clusters[1].context"
    assert "contexts has no entry named 'south' (it has 'e', 'w')" in problem.message


_ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    "",
    "x" * 5000,
    "tab\there",
    "nul\x00",
    "ünïcödé",
    "https://evil.test",
    "http://127.0.0.1:1",
    "/etc/passwd",
    [],
    [None],
    {},
    {"name": 1},
    {"exec": {"command": "sh"}},
    "-----BEGIN CERTIFICATE-----",
]


_SERVERS = [
    "https://evil.test",
    "https://east.example:6444",
    "https://a.east.example:6443",
    "http://127.0.0.1:1",
    "https://[::1]:1/p",
    "https://127.0.0.2",
]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


def _mutated(rng: random.Random) -> dict[str, Any]:
    config = kubeconfig(cluster={"certificate-authority-data": CA_DATA})
    if rng.random() < 0.3:
        config["clusters"][0]["cluster"]["server"] = rng.choice(_SERVERS)
    for _ in range(rng.randint(0, 3)):
        path = rng.choice(_paths(config)[1:])
        parent: Any = config
        for step in path[:-1]:
            parent = parent[step]
        if rng.random() < 0.2 and isinstance(parent, dict):
            parent[rng.choice(["extra", "exec", "tokenFile", "proxy-url", "as"])] = "x"
        else:
            parent[path[-1]] = rng.choice(_ODD_VALUES)
    return config


def test_a_thousand_mutated_kubeconfigs_get_a_verdict_never_an_exception() -> None:
    rng = random.Random(12)
    verdicts: dict[str, int] = {}
    for _ in range(1000):
        config = _mutated(rng)
        try:
            judged = judge(json.dumps(config))  # JSON is YAML, and quick to write
        except KubeconfigRefused as refusal:
            assert refusal.field == FIELD
            assert len(refusal.message) < 700, refusal.message
            verdicts[refusal.reason.value] = verdicts.get(refusal.reason.value, 0) + 1
            continue
        verdicts["judged"] = verdicts.get("judged", 0) + 1
        url = parse_server_url(judged.server)
        assert isinstance(url, ServerUrl) and server_allowed(url, POLICY.servers), judged.server
        assert judged.authorization.isprintable()
    # The corpus exercises every verdict, so the loop above is not vacuous.
    assert set(verdicts) == {"judged", "invalid", "server-not-allowed"}, verdicts


def test_no_code_hands_kubeconfig_text_to_the_clients_loader() -> None:
    """The client's loaders taking a kubeconfig document (rather than the operator's file) are
    never called: request kubeconfigs reach a client only as a JudgedKubeconfig's values."""
    loaders = ("new_client_from_config_dict", "load_kube_config_from_dict", "KubeConfigLoader")
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}: {name}"
        for package in ("adapters", "coordinator", "serving", "meshplane_cli")
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        for name in loaders
        if name in path.read_text(encoding="utf-8")
    ]
    assert offenders == []
