"""Bearer tokens: static tokens (kube-apiserver's `--token-auth-file`) and ServiceAccount tokens.

ServiceAccount tokens are JWTs (HS256, signed with a key generated when kubesim starts, so
they do not survive a restart) carrying the apiserver's claims: `iss`, `sub`
(`system:serviceaccount:NS:NAME`), `aud`, `exp`, `iat`, `nbf`, `jti` and the `kubernetes.io`
claim naming the ServiceAccount's uid and, for bound tokens, the Pod or Secret. A token is
valid while it has not expired, names an audience the reviewer asked for, and its
ServiceAccount (same uid) and bound object still exist.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubesim.store import Store

ISSUER = "https://kubernetes.default.svc.cluster.local"
"""The token issuer and, as on an apiserver without `--api-audiences`, its only audience."""

AUTHENTICATED = "system:authenticated"
ANONYMOUS = "system:anonymous"
UNAUTHENTICATED = "system:unauthenticated"
SERVICE_ACCOUNTS = "system:serviceaccounts"
SA_PREFIX = "system:serviceaccount:"
MASTERS = "system:masters"
ADMIN_USER = "kubesim-admin"
"""Who the token of kubesim's own kubeconfig is (group `system:masters`)."""

DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 2**32
BOUND_KINDS = {"Pod": ("", "pods"), "Secret": ("", "secrets"), "Node": ("", "nodes")}
CLUSTER_SCOPED_BOUND_KINDS = ("Node",)
SA_KEY = ("", "serviceaccounts")


@dataclass(frozen=True, kw_only=True)
class UserInfo:
    """An authenticated identity as TokenReview and SubjectAccessReview carry it."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"username": self.username}
        if self.uid:
            body["uid"] = self.uid
        if self.groups:
            body["groups"] = list(self.groups)
        if self.extra:
            body["extra"] = {k: list(v) for k, v in self.extra.items()}
        return body


ANONYMOUS_USER = UserInfo(username=ANONYMOUS, groups=(UNAUTHENTICATED,))


@dataclass(frozen=True, kw_only=True)
class Authenticated:
    user: UserInfo
    audiences: tuple[str, ...]


class TokenInvalid(Exception):
    """Why a token does not authenticate (the TokenReview's `status.error`)."""


@dataclass(frozen=True, kw_only=True)
class BoundObject:
    kind: str
    name: str
    uid: str


def parse_token_file(text: str) -> dict[str, UserInfo]:
    """kube-apiserver's static token CSV: `token,user,uid[,"group1,group2"]` per line."""
    users: dict[str, UserInfo] = {}
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].startswith("#"):
            continue
        if len(row) < 3 or not row[0] or not row[1]:
            raise ValueError(f'line {number}: want token,user,uid[,"group1,group2"]')
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        users[row[0].strip()] = UserInfo(username=row[1].strip(), uid=row[2].strip(), groups=groups)
    return users


class StaticTokens:
    """Tokens from a token file (re-read when its mtime changes) and kubesim's admin token."""

    def __init__(self, path: Path | None, builtin: Mapping[str, UserInfo]) -> None:
        self.path = path
        self._builtin = dict(builtin)
        self._users: dict[str, UserInfo] = {}
        self._mtime: float | None = None
        if path is not None:
            self._users = parse_token_file(path.read_text())
            self._mtime = path.stat().st_mtime

    def lookup(self, token: str) -> UserInfo | None:
        if self.path is not None:
            try:
                mtime = self.path.stat().st_mtime
                if mtime != self._mtime:
                    self._users = parse_token_file(self.path.read_text())
                    self._mtime = mtime
            except (OSError, ValueError):
                pass  # keep the last good file, as a reloading apiserver does
        found = self._users.get(token) or self._builtin.get(token)
        return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ServiceAccountTokens:
    """Issues and verifies ServiceAccount JWTs with one HMAC key."""

    def __init__(self, key: bytes | None = None, *, issuer: str = ISSUER) -> None:
        self._key = key or secrets.token_bytes(32)
        self.issuer = issuer
        self._kid = hashlib.sha256(self._key).hexdigest()[:16]

    def issue(
        self,
        *,
        namespace: str,
        name: str,
        uid: str,
        audiences: tuple[str, ...],
        expiration_seconds: int,
        bound: BoundObject | None = None,
    ) -> tuple[str, int]:
        """A signed token and its expiry (seconds since the epoch)."""
        now = int(time.time())
        expires = now + expiration_seconds
        k8s: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        }
        if bound is not None:
            k8s[bound.kind.lower()] = {"name": bound.name, "uid": bound.uid}
        claims = {
            "aud": list(audiences),
            "exp": expires,
            "iat": now,
            "nbf": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": k8s,
            "sub": f"{SA_PREFIX}{namespace}:{name}",
        }
        header = {"alg": "HS256", "kid": self._kid, "typ": "JWT"}
        signing_input = (
            _b64(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + _b64(signature), expires

    def claims(self, token: str) -> dict[str, Any] | None:
        """The claims of a token this issuer signed (None: not one of ours)."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signature = _unb64(parts[2])
            expected = hmac.new(
                self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(signature, expected):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != self.issuer:
            return None
        return claims


class Authenticator:
    """Turns a bearer token into a user, as the apiserver's token authenticators do."""

    def __init__(
        self,
        store: Store,
        *,
        token_file: Path | None = None,
        admin_token: str = "",
        api_audiences: tuple[str, ...] = (ISSUER,),
    ) -> None:
        self.store = store
        self.api_audiences = api_audiences
        builtin = (
            {admin_token: UserInfo(username=ADMIN_USER, groups=(MASTERS,))} if admin_token else {}
        )
        self.static = StaticTokens(token_file, builtin)
        self.service_accounts = ServiceAccountTokens()

    def authenticate(self, token: str, audiences: tuple[str, ...] = ()) -> Authenticated:
        """The token's user and the audiences it is valid for, or `TokenInvalid`."""
        wanted = audiences or self.api_audiences
        claims = self.service_accounts.claims(token)
        if claims is not None:
            return self._service_account(claims, wanted)
        user = self.static.lookup(token)
        if user is None:
            raise TokenInvalid("invalid bearer token")
        # static tokens are audience-agnostic: valid for the apiserver's own audiences only
        valid = tuple(a for a in wanted if a in self.api_audiences)
        if not valid:
            raise TokenInvalid(
                f"token audiences {list(self.api_audiences)} is invalid for the target "
                f"audiences {list(wanted)}"
            )
        groups = user.groups if AUTHENTICATED in user.groups else (*user.groups, AUTHENTICATED)
        return Authenticated(
            user=UserInfo(username=user.username, uid=user.uid, groups=groups), audiences=valid
        )

    def _service_account(self, claims: dict[str, Any], wanted: tuple[str, ...]) -> Authenticated:
        token_audiences = claims.get("aud") or []
        if isinstance(token_audiences, str):
            token_audiences = [token_audiences]
        valid = tuple(a for a in wanted if a in token_audiences)
        if not valid:
            raise TokenInvalid(
                f"invalid bearer token, token audiences {list(token_audiences)} is invalid for "
                f"the target audiences {list(wanted)}"
            )
        if int(claims.get("exp") or 0) <= time.time():
            raise TokenInvalid("invalid bearer token, service account token has expired")
        k8s = claims.get("kubernetes.io") or {}
        namespace = str(k8s.get("namespace", ""))
        sa_claim = k8s.get("serviceaccount") or {}
        name, uid = str(sa_claim.get("name", "")), str(sa_claim.get("uid", ""))
        account = self.store.get(SA_KEY, namespace, name)
        if account is None or account["metadata"].get("deletionTimestamp"):
            # (bracketed: the apiserver's authenticators' errors, aggregated)
            raise TokenInvalid(f'[invalid bearer token, serviceaccounts "{name}" not found]')
        if account["metadata"].get("uid") != uid:
            raise TokenInvalid(
                f"[invalid bearer token, service account UID ({account['metadata'].get('uid')}) "
                f"does not match claim ({uid})]"
            )
        extra: dict[str, tuple[str, ...]] = {
            "authentication.kubernetes.io/credential-id": (f"JTI={claims.get('jti', '')}",)
        }
        for kind, key in BOUND_KINDS.items():
            ref = k8s.get(kind.lower())
            if not ref:
                continue
            where = "" if kind in CLUSTER_SCOPED_BOUND_KINDS else namespace
            obj = self.store.get(key, where, str(ref.get("name", "")))
            if obj is None or obj["metadata"].get("uid") != ref.get("uid"):
                # (the apiserver's words once the bound object is deleted or being deleted)
                raise TokenInvalid(
                    "[invalid bearer token, service account token has been invalidated]"
                )
            if kind == "Pod":
                extra["authentication.kubernetes.io/pod-name"] = (str(ref.get("name")),)
                extra["authentication.kubernetes.io/pod-uid"] = (str(ref.get("uid")),)
        user = UserInfo(
            username=f"{SA_PREFIX}{namespace}:{name}",
            uid=uid,
            groups=(SERVICE_ACCOUNTS, f"{SERVICE_ACCOUNTS}:{namespace}", AUTHENTICATED),
            extra=extra,
        )
        return Authenticated(user=user, audiences=valid)
