"""TokenRequest and TokenReview over HTTP: ServiceAccount tokens (audiences, expiry, the
account and bound object still existing) and static tokens from a token file."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.harness import RunningSim, running_kubesim
from kubesim.kubeconfig import TOKEN
from kubesim.server import SimConfig
from kubesim.tokens import ISSUER
from tests.kubesim.servers import ApiServer
from tests.kubesim.support import eventually, raw_request, run_kubectl

AUTHN = "/apis/authentication.k8s.io/v1"


Target = ApiServer | RunningSim


def _namespace(sim: Target) -> str:
    """Where a test's ServiceAccounts live: its own namespace (kubesim-only tests: default)."""
    return sim.namespace if isinstance(sim, ApiServer) else "default"


def _create(sim: Target, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = raw_request(sim, "POST", path, body)
    assert status == 201, answer
    result: dict[str, Any] = answer
    return result


def _service_account(sim: Target, name: str) -> dict[str, Any]:
    return _create(
        sim, f"/api/v1/namespaces/{_namespace(sim)}/serviceaccounts", {"metadata": {"name": name}}
    )


def _token(sim: Target, name: str, **spec: Any) -> tuple[int, dict[str, Any]]:
    status, body = raw_request(
        sim,
        "POST",
        f"/api/v1/namespaces/{_namespace(sim)}/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    result: dict[str, Any] = body
    return status, result


def _review(sim: Target, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    answer = _create(sim, f"{AUTHN}/tokenreviews", {"kind": "TokenReview", "spec": spec})
    assert answer["kind"] == "TokenReview" and answer["apiVersion"] == "authentication.k8s.io/v1"
    status: dict[str, Any] = answer["status"]
    return status


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_token_request_issues_a_token_the_review_accepts(server: ApiServer, ns: str) -> None:
    account = _service_account(server, "robot")
    status, answer = _token(server, "robot", audiences=["meshplane"], expirationSeconds=900)
    assert status == 201, answer
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["audiences"] == ["meshplane"]
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    token = answer["status"]["token"]
    claims = _claims(token)
    assert claims["sub"] == f"system:serviceaccount:{ns}:robot"
    assert claims["aud"] == ["meshplane"] and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 900
    assert claims["kubernetes.io"]["serviceaccount"]["uid"] == account["metadata"]["uid"]

    review = _review(server, token, ["meshplane"])
    assert review["authenticated"] is True
    assert review["audiences"] == ["meshplane"]
    user = review["user"]
    assert user["username"] == f"system:serviceaccount:{ns}:robot"
    assert user["uid"] == account["metadata"]["uid"]
    assert user["groups"] == [
        "system:serviceaccounts",
        f"system:serviceaccounts:{ns}",
        "system:authenticated",
    ]
    assert user["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]


def test_review_checks_audiences_signature_and_the_account(server: ApiServer, ns: str) -> None:
    _service_account(server, "robot")
    _, answer = _token(server, "robot", audiences=["meshplane"])
    token = answer["status"]["token"]
    # another audience, and the apiserver's own (the default when none is asked for)
    other = _review(server, token, ["somebody-else"])
    assert "authenticated" not in other and "invalid for the target audiences" in other["error"]
    assert "authenticated" not in _review(server, token)
    # a forged signature, and a token that is no JWT at all
    head, payload, _ = token.split(".")
    assert "authenticated" not in _review(server, f"{head}.{payload}.AAAA", ["meshplane"])
    assert _review(server, "not-a-token")["error"] == "invalid bearer token"
    # a token without audiences is for the apiserver itself
    _, default = _token(server, "robot")
    assert default["spec"]["audiences"] == [ISSUER]
    assert _review(server, default["status"]["token"])["audiences"] == [ISSUER]
    # the account goes: its tokens stop working; a new account of the same name is not it
    status, _ = raw_request(server, "DELETE", f"/api/v1/namespaces/{ns}/serviceaccounts/robot")
    assert status == 200

    def refused() -> dict[str, Any] | None:  # (the real server caches a review for seconds)
        review = _review(server, token, ["meshplane"])
        return review if "authenticated" not in review else None

    gone = eventually(refused, timeout=60)
    assert gone["error"] == '[invalid bearer token, serviceaccounts "robot" not found]'
    _service_account(server, "robot")
    replaced = eventually(refused, timeout=60)
    assert "does not match claim" in replaced["error"]


def test_expired_tokens_are_refused(kubesim: RunningSim) -> None:
    """kubesim only: it issues an already expired token through its own issuer (the real
    server's TokenRequest refuses durations under ten minutes)."""
    _service_account(kubesim, "robot")
    issuer = kubesim.sim.authenticator.service_accounts
    account = kubesim.sim.store.get(("", "serviceaccounts"), "default", "robot")
    assert account is not None
    token, _ = kubesim.call(
        lambda: issuer.issue(
            namespace="default",
            name="robot",
            uid=account["metadata"]["uid"],
            audiences=("meshplane",),
            expiration_seconds=-1,
        )
    )
    review = _review(kubesim, token, ["meshplane"])
    assert review == {  # (a refusal leaves `authenticated: false` out, as the apiserver)
        "user": {},
        "error": "invalid bearer token, service account token has expired",
    }


def test_bound_tokens_die_with_their_pod(server: ApiServer, ns: str) -> None:
    _service_account(server, "robot")
    pod = _create(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "p"},
            "spec": {
                "serviceAccountName": "robot",
                "containers": [{"name": "c", "image": "busybox"}],
            },
        },
    )
    status, answer = _token(
        server,
        "robot",
        audiences=["a"],
        boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p"},
    )
    assert status == 201, answer
    token = answer["status"]["token"]
    assert _claims(token)["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]
    user = _review(server, token, ["a"])["user"]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    # a Pod running as another ServiceAccount cannot hold the token
    _create(
        server,
        f"/api/v1/namespaces/{ns}/pods",
        {"metadata": {"name": "q"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )
    status, refused = _token(server, "robot", boundObjectRef={"kind": "Pod", "name": "q"})
    assert (status, refused["message"]) == (
        400,
        'cannot bind token for serviceaccount "robot" to pod running with different '
        "serviceaccount name.",
    )
    raw_request(server, "DELETE", f"/api/v1/namespaces/{ns}/pods/p")

    def refused_once_gone() -> dict[str, Any] | None:  # (a real Pod goes after its grace)
        review = _review(server, token, ["a"])
        return review if "authenticated" not in review else None

    assert eventually(refused_once_gone, timeout=60)["error"] == (
        "[invalid bearer token, service account token has been invalidated]"
    )


def test_token_request_refusals(server: ApiServer, ns: str) -> None:
    status, body = _token(server, "ghost")
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'
    _service_account(server, "robot")
    status, body = _token(server, "robot", expirationSeconds=60)
    assert status == 422 and "less than 10 minutes" in body["message"]
    status, body = _token(server, "robot", boundObjectRef={"kind": "ConfigMap", "name": "n"})
    assert (status, body["message"]) == (
        400,
        "cannot bind token to object of type /, Kind=ConfigMap",
    )
    status, body = _token(server, "robot", boundObjectRef={"kind": "Node", "name": "n"})
    assert (status, body["message"]) == (404, 'nodes "n" not found')
    status, body = _token(server, "robot", boundObjectRef={"kind": "Secret", "name": "nope"})
    assert status == 404
    status, _ = raw_request(server, "GET", f"/api/v1/namespaces/{ns}/serviceaccounts/robot/token")
    assert status == 405
    status, body = raw_request(server, "POST", f"{AUTHN}/tokenreviews", {"spec": {}})
    assert (status, body["message"]) == (400, "token is required for TokenReview in authentication")
    status, _ = raw_request(server, "GET", f"{AUTHN}/tokenreviews")
    assert status == 405


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.csv"
    path.write_text('alice-token,alice,1001,"meshplane:admins,dev"\nbob-token,bob,1002\n')
    return path


@pytest.fixture
def sim_with_tokens(token_file: Path) -> Iterator[RunningSim]:
    with running_kubesim(SimConfig(ready_delay=0.05, token_auth_file=token_file)) as sim:
        yield sim


def test_static_tokens_from_the_token_file(sim_with_tokens: RunningSim, token_file: Path) -> None:
    """kubesim only: the session's real control plane is started without a token file."""
    alice = _review(sim_with_tokens, "alice-token")
    assert alice["authenticated"] is True
    assert alice["user"] == {
        "username": "alice",
        "uid": "1001",
        "groups": ["meshplane:admins", "dev", "system:authenticated"],
    }
    assert alice["audiences"] == [ISSUER]
    assert _review(sim_with_tokens, "bob-token")["user"]["groups"] == ["system:authenticated"]
    # static tokens are valid for the apiserver's own audiences only
    assert "authenticated" not in _review(sim_with_tokens, "alice-token", ["meshplane"])
    # kubesim's kubeconfig token is its administrator
    admin = _review(sim_with_tokens, TOKEN)["user"]
    assert admin["username"] == "kubesim-admin" and "system:masters" in admin["groups"]
    # the file is re-read when it changes
    token_file.write_text("carol-token,carol,1003,ops\n")
    assert _review(sim_with_tokens, "carol-token")["user"]["username"] == "carol"
    assert "authenticated" not in _review(sim_with_tokens, "alice-token")


def test_self_subject_review_names_the_caller(sim_with_tokens: RunningSim) -> None:
    """kubesim only: it identifies callers by the token file's static tokens."""

    def whoami(token: str | None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return raw_request(
            sim_with_tokens, "POST", f"{AUTHN}/selfsubjectreviews", {}, headers=headers
        )

    status, body = whoami("bob-token")
    assert status == 201 and body["status"]["userInfo"]["username"] == "bob"
    status, body = whoami(None)
    assert body["status"]["userInfo"] == {
        "username": "system:anonymous",
        "groups": ["system:unauthenticated"],
    }
    status, body = whoami("wrong")
    assert (status, body["reason"]) == (401, "Unauthorized")


def test_kubectl_create_token_and_whoami(tls_server: ApiServer, tmp_path: Path) -> None:
    ns = tls_server.namespace
    admin = [f"--kubeconfig={tls_server.kubeconfig}", "-n", ns]

    def kubectl(*args: str, stdin: str | None = None) -> str:
        proc = run_kubectl(*args, cache=tmp_path, stdin=stdin)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    kubectl(*admin, "create", "serviceaccount", "robot")
    token = kubectl(
        *admin, "create", "token", "robot", "--audience=meshplane", "--duration=20m"
    ).strip()
    assert _claims(token)["aud"] == ["meshplane"]
    assert _claims(token)["exp"] - _claims(token)["iat"] == 1200
    review = {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {"token": token, "audiences": ["meshplane"]},
    }
    answer = json.loads(
        kubectl(*admin, "create", "-f", "-", "-o", "json", stdin=json.dumps(review))
    )
    assert answer["status"]["user"]["username"] == f"system:serviceaccount:{ns}:robot"
    who = json.loads(kubectl(*admin, "auth", "whoami", "-o", "json"))
    assert who["status"]["userInfo"]["username"] == tls_server.admin_user
    robot = kubectl(*admin, "create", "token", "robot").strip()
    as_robot = tls_server.token_args(robot, tmp_path)
    who = json.loads(kubectl(*as_robot, "auth", "whoami", "-o", "json"))
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{ns}:robot"
