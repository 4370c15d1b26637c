"""TokenRequest and TokenReview over HTTP: ServiceAccount tokens (audiences, expiry, the
account and bound object still existing) and static tokens from a token file."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubesim.harness import RunningSim, running_kubesim
from kubesim.kubeconfig import TOKEN
from kubesim.server import SimConfig
from kubesim.tokens import ISSUER
from tests.kubesim.support import kubectl_binary, raw_request

AUTHN = "/apis/authentication.k8s.io/v1"


def _create(sim: RunningSim, path: str, body: dict[str, Any]) -> dict[str, Any]:
    status, answer = raw_request(sim, "POST", path, body)
    assert status == 201, answer
    result: dict[str, Any] = answer
    return result


def _service_account(sim: RunningSim, name: str, namespace: str = "default") -> dict[str, Any]:
    return _create(
        sim, f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": name}}
    )


def _token(sim: RunningSim, name: str, **spec: Any) -> tuple[int, dict[str, Any]]:
    status, body = raw_request(
        sim,
        "POST",
        f"/api/v1/namespaces/default/serviceaccounts/{name}/token",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
    )
    result: dict[str, Any] = body
    return status, result


def _review(sim: RunningSim, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
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


def test_token_request_issues_a_token_the_review_accepts(kubesim: RunningSim) -> None:
    account = _service_account(kubesim, "robot")
    status, answer = _token(kubesim, "robot", audiences=["meshplane"], expirationSeconds=900)
    assert status == 201, answer
    assert answer["kind"] == "TokenRequest"
    assert answer["spec"]["audiences"] == ["meshplane"]
    assert answer["status"]["expirationTimestamp"].endswith("Z")
    token = answer["status"]["token"]
    claims = _claims(token)
    assert claims["sub"] == "system:serviceaccount:default:robot"
    assert claims["aud"] == ["meshplane"] and claims["iss"] == ISSUER
    assert claims["exp"] - claims["iat"] == 900
    assert claims["kubernetes.io"]["serviceaccount"]["uid"] == account["metadata"]["uid"]

    review = _review(kubesim, token, ["meshplane"])
    assert review["authenticated"] is True
    assert review["audiences"] == ["meshplane"]
    user = review["user"]
    assert user["username"] == "system:serviceaccount:default:robot"
    assert user["uid"] == account["metadata"]["uid"]
    assert user["groups"] == [
        "system:serviceaccounts",
        "system:serviceaccounts:default",
        "system:authenticated",
    ]
    assert user["extra"]["authentication.kubernetes.io/credential-id"] == [f"JTI={claims['jti']}"]


def test_review_checks_audiences_signature_and_the_account(kubesim: RunningSim) -> None:
    _service_account(kubesim, "robot")
    _, answer = _token(kubesim, "robot", audiences=["meshplane"])
    token = answer["status"]["token"]
    # another audience, and the apiserver's own (the default when none is asked for)
    other = _review(kubesim, token, ["somebody-else"])
    assert other["authenticated"] is False and "invalid for the target audiences" in other["error"]
    assert _review(kubesim, token)["authenticated"] is False
    # a forged signature, and a token that is no JWT at all
    head, payload, _ = token.split(".")
    assert _review(kubesim, f"{head}.{payload}.AAAA", ["meshplane"])["authenticated"] is False
    assert _review(kubesim, "not-a-token")["error"] == "invalid bearer token"
    # a token without audiences is for the apiserver itself
    _, default = _token(kubesim, "robot")
    assert default["spec"]["audiences"] == [ISSUER]
    assert _review(kubesim, default["status"]["token"])["audiences"] == [ISSUER]
    # the account goes: its tokens stop working; a new account of the same name is not it
    status, _ = raw_request(kubesim, "DELETE", "/api/v1/namespaces/default/serviceaccounts/robot")
    assert status == 200
    gone = _review(kubesim, token, ["meshplane"])
    assert gone["authenticated"] is False
    assert "service account default/robot has been deleted" in gone["error"]
    _service_account(kubesim, "robot")
    replaced = _review(kubesim, token, ["meshplane"])
    assert replaced["authenticated"] is False and "does not match claim" in replaced["error"]


def test_expired_tokens_are_refused(kubesim: RunningSim) -> None:
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
    assert review == {
        "authenticated": False,
        "user": {},
        "error": "invalid bearer token, service account token has expired",
    }


def test_bound_tokens_die_with_their_pod(kubesim: RunningSim) -> None:
    _service_account(kubesim, "robot")
    pod = _create(
        kubesim,
        "/api/v1/namespaces/default/pods",
        {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
    )
    status, answer = _token(
        kubesim,
        "robot",
        audiences=["a"],
        boundObjectRef={"kind": "Pod", "apiVersion": "v1", "name": "p"},
    )
    assert status == 201, answer
    assert answer["spec"]["boundObjectRef"]["uid"] == pod["metadata"]["uid"]
    token = answer["status"]["token"]
    user = _review(kubesim, token, ["a"])["user"]
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["p"]
    raw_request(kubesim, "DELETE", "/api/v1/namespaces/default/pods/p")
    review = _review(kubesim, token, ["a"])
    assert review["authenticated"] is False and "no longer exists" in review["error"]


def test_token_request_refusals(kubesim: RunningSim) -> None:
    status, body = _token(kubesim, "ghost")
    assert status == 404 and body["message"] == 'serviceaccounts "ghost" not found'
    _service_account(kubesim, "robot")
    status, body = _token(kubesim, "robot", expirationSeconds=60)
    assert status == 422 and "less than 10 minutes" in body["message"]
    status, body = _token(kubesim, "robot", boundObjectRef={"kind": "Node", "name": "n"})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.boundObjectRef.kind"
    status, body = _token(kubesim, "robot", boundObjectRef={"kind": "Secret", "name": "nope"})
    assert status == 404
    status, _ = raw_request(
        kubesim, "GET", "/api/v1/namespaces/default/serviceaccounts/robot/token"
    )
    assert status == 405
    status, body = raw_request(kubesim, "POST", f"{AUTHN}/tokenreviews", {"spec": {}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.token"
    status, _ = raw_request(kubesim, "GET", f"{AUTHN}/tokenreviews")
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
    assert _review(sim_with_tokens, "alice-token", ["meshplane"])["authenticated"] is False
    # kubesim's kubeconfig token is its administrator
    admin = _review(sim_with_tokens, TOKEN)["user"]
    assert admin["username"] == "kubesim-admin" and "system:masters" in admin["groups"]
    # the file is re-read when it changes
    token_file.write_text("carol-token,carol,1003,ops\n")
    assert _review(sim_with_tokens, "carol-token")["user"]["username"] == "carol"
    assert _review(sim_with_tokens, "alice-token")["authenticated"] is False


def test_self_subject_review_names_the_caller(sim_with_tokens: RunningSim) -> None:
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


def test_kubectl_create_token_and_whoami(tls_kubesim: RunningSim, tmp_path: Path) -> None:
    kubesim = tls_kubesim
    base = [kubectl_binary(), f"--kubeconfig={kubesim.kubeconfig}", f"--cache-dir={tmp_path}"]

    def kubectl(*args: str, stdin: str | None = None) -> str:
        proc = subprocess.run(
            [*base, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    kubectl("create", "serviceaccount", "robot")
    token = kubectl("create", "token", "robot", "--audience=meshplane", "--duration=20m").strip()
    assert _claims(token)["aud"] == ["meshplane"]
    assert _claims(token)["exp"] - _claims(token)["iat"] == 1200
    review = {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "spec": {"token": token, "audiences": ["meshplane"]},
    }
    answer = json.loads(kubectl("create", "-f", "-", "-o", "json", stdin=json.dumps(review)))
    assert answer["status"]["user"]["username"] == "system:serviceaccount:default:robot"
    who = json.loads(kubectl("auth", "whoami", "-o", "json"))
    assert who["status"]["userInfo"]["username"] == "kubesim-admin"
    robot = kubectl("create", "token", "robot").strip()
    who = json.loads(kubectl(f"--token={robot}", "auth", "whoami", "-o", "json"))
    assert who["status"]["userInfo"]["username"] == "system:serviceaccount:default:robot"
