"""The review APIs: TokenRequest, TokenReview, SelfSubjectReview and the access reviews.

None of them is stored: each POST is answered from the tokens and the RBAC objects as they
are at that moment. kubesim does not itself authenticate or authorize its API; these only
answer what the apiserver would tell a webhook-style client (a coordinator asking whether a
token is valid, or whether its user may do something).
"""

from __future__ import annotations

import datetime
from typing import Any

from kubesim import rbac
from kubesim.errors import ApiError
from kubesim.objects import Obj, now_rfc3339
from kubesim.store import Store
from kubesim.tokens import (
    ANONYMOUS_USER,
    BOUND_KINDS,
    CLUSTER_SCOPED_BOUND_KINDS,
    DEFAULT_EXPIRATION,
    MAX_EXPIRATION,
    MIN_EXPIRATION,
    SA_KEY,
    Authenticator,
    BoundObject,
    TokenInvalid,
    UserInfo,
)

AUTHENTICATION = "authentication.k8s.io"
AUTHORIZATION = "authorization.k8s.io"


def _strings(value: Any, path: str, group: str, kind: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError.invalid(
            group, kind, "", [("FieldValueInvalid", path, "Invalid value: must be strings")]
        )
    return tuple(value)


def _object(body: Any, group: str, kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The request's (metadata, spec), with its apiVersion and kind checked when given."""
    if not isinstance(body, dict):
        raise ApiError.bad_request("the body of the request must be a JSON object")
    api_version = f"{group}/v1"
    if body.get("apiVersion") not in (None, api_version) or body.get("kind") not in (None, kind):
        raise ApiError.bad_request(
            f"the body must be a {kind} of {api_version}, not "
            f"{body.get('kind')} of {body.get('apiVersion')}"
        )
    metadata, spec = body.get("metadata") or {}, body.get("spec") or {}
    if not isinstance(metadata, dict) or not isinstance(spec, dict):
        raise ApiError.bad_request("metadata and spec must be objects")
    return metadata, spec


def _answer(group: str, kind: str, metadata: dict[str, Any], spec: Any, status: Any) -> Obj:
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata}
    body: Obj = {
        "kind": kind,
        "apiVersion": f"{group}/v1",
        "metadata": {**kept, "creationTimestamp": now_rfc3339()},
    }
    if spec is not None:
        body["spec"] = _without_empty(spec)
    body["status"] = status
    return body


def _without_empty(value: Any) -> Any:
    """`value` as the apiserver echoes a decoded request: empty strings, lists and maps
    (omitempty fields) left out."""
    if isinstance(value, dict):
        kept = {k: _without_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ("", [], {}, None)}
    if isinstance(value, list):
        return [_without_empty(v) for v in value]
    return value


class Reviews:
    """Answers the review APIs over one store and authenticator."""

    def __init__(self, store: Store, authenticator: Authenticator) -> None:
        self.store = store
        self.authenticator = authenticator

    # --- who is asking ---------------------------------------------------------------------

    def requester(self, authorization: str) -> UserInfo:
        """The caller of a self review: its bearer token's user, anonymous without one."""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ANONYMOUS_USER
        try:
            return self.authenticator.authenticate(token.strip()).user
        except TokenInvalid as exc:
            raise ApiError(401, "Unauthorized", "Unauthorized") from exc

    # --- authentication.k8s.io -------------------------------------------------------------

    def token_request(self, namespace: str, name: str, body: Any) -> Obj:
        """POST .../serviceaccounts/NAME/token: a signed token for an existing ServiceAccount."""
        metadata, spec = _object(body, AUTHENTICATION, "TokenRequest")
        account = self.store.get(SA_KEY, namespace, name)
        if account is None:
            raise ApiError.not_found("", "serviceaccounts", name)
        audiences = _strings(
            spec.get("audiences"), "spec.audiences", AUTHENTICATION, "TokenRequest"
        )
        audiences = audiences or self.authenticator.api_audiences
        seconds = spec.get("expirationSeconds", DEFAULT_EXPIRATION)
        problem = ""
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            problem = "must be an integer"
        elif seconds < MIN_EXPIRATION:
            problem = "may not specify a duration less than 10 minutes"
        elif seconds > MAX_EXPIRATION:
            problem = "may not specify a duration larger than 2^32 seconds"
        if problem:
            raise ApiError.invalid(
                AUTHENTICATION,
                "TokenRequest",
                name,
                [("FieldValueInvalid", "spec.expirationSeconds", f"Invalid value: {problem}")],
            )
        bound = self._bound_object(namespace, name, spec.get("boundObjectRef"))
        token, expires = self.authenticator.service_accounts.issue(
            namespace=namespace,
            name=name,
            uid=str(account["metadata"]["uid"]),
            audiences=audiences,
            expiration_seconds=seconds,
            bound=bound,
        )
        # the reference is echoed as sent (the bound object's uid is in the token's claims)
        answered_spec = {**spec, "audiences": list(audiences), "expirationSeconds": seconds}
        stamp = datetime.datetime.fromtimestamp(expires, datetime.UTC)
        return _answer(
            AUTHENTICATION,
            "TokenRequest",
            {**metadata, "name": name, "namespace": namespace},
            answered_spec,
            {"token": token, "expirationTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )

    def _bound_object(self, namespace: str, name: str, ref: Any) -> BoundObject | None:
        if not ref:
            return None
        if not isinstance(ref, dict) or ref.get("kind") not in BOUND_KINDS:
            kind = ref.get("kind") if isinstance(ref, dict) else ref
            api_version = ref.get("apiVersion") if isinstance(ref, dict) else ""
            group, _, version = str(api_version or "").rpartition("/")
            raise ApiError.bad_request(
                f"cannot bind token to object of type {group}/{version}, Kind={str(kind)[:64]}"
            )
        kind, bound_name = ref["kind"], str(ref.get("name", ""))
        where = "" if kind in CLUSTER_SCOPED_BOUND_KINDS else namespace
        obj = self.store.get(BOUND_KINDS[kind], where, bound_name)
        if obj is None:
            raise ApiError.not_found("", BOUND_KINDS[kind][1], bound_name)
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName", "default") != name:
            raise ApiError.bad_request(
                f'cannot bind token for serviceaccount "{name}" to pod running with different '
                "serviceaccount name."
            )
        uid = str(obj["metadata"]["uid"])
        if ref.get("uid") and ref["uid"] != uid:
            raise ApiError.conflict(
                "",
                BOUND_KINDS[kind][1],
                bound_name,
                f"the UID in the bound object reference ({str(ref['uid'])[:64]}) does not match "
                f"the UID in record ({uid})",
            )
        return BoundObject(kind=kind, name=bound_name, uid=uid)

    def token_review(self, body: Any) -> Obj:
        metadata, spec = _object(body, AUTHENTICATION, "TokenReview")
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError.bad_request("token is required for TokenReview in authentication")
        audiences = _strings(spec.get("audiences"), "spec.audiences", AUTHENTICATION, "TokenReview")
        try:
            found = self.authenticator.authenticate(token, audiences)
        except TokenInvalid as exc:
            # (as the apiserver: `authenticated: false` is left out, `user` stays)
            status: dict[str, Any] = {"user": {}, "error": str(exc)}
        else:
            status = {
                "authenticated": True,
                "user": found.user.as_json(),
                "audiences": list(found.audiences),
            }
        return _answer(AUTHENTICATION, "TokenReview", metadata, spec, status)

    def self_subject_review(self, body: Any, requester: UserInfo) -> Obj:
        metadata, _ = _object(body, AUTHENTICATION, "SelfSubjectReview")
        return _answer(
            AUTHENTICATION,
            "SelfSubjectReview",
            metadata,
            None,
            {"userInfo": requester.as_json()},
        )

    # --- authorization.k8s.io --------------------------------------------------------------

    def subject_access_review(self, body: Any) -> Obj:
        metadata, spec = _object(body, AUTHORIZATION, "SubjectAccessReview")
        groups = _strings(spec.get("groups"), "spec.groups", AUTHORIZATION, "SubjectAccessReview")
        user = spec.get("user") or ""
        if not isinstance(user, str):
            user = ""
        if not user and not groups:
            raise ApiError.invalid(
                AUTHORIZATION,
                "SubjectAccessReview",
                "",
                [
                    (
                        "FieldValueInvalid",
                        "spec.user",
                        'Invalid value: "": at least one of user or group must be specified',
                    )
                ],
            )
        attrs = self._attributes(spec, "SubjectAccessReview", user, groups)
        return self._decide(metadata, spec, "SubjectAccessReview", attrs)

    def local_subject_access_review(self, namespace: str, body: Any) -> Obj:
        metadata, spec = _object(body, AUTHORIZATION, "LocalSubjectAccessReview")
        kind = "LocalSubjectAccessReview"
        resource = spec.get("resourceAttributes")
        if spec.get("nonResourceAttributes") is not None:
            raise ApiError.invalid(
                AUTHORIZATION,
                kind,
                "",
                [("FieldValueInvalid", "spec.nonResourceAttributes", "Invalid value: disallowed")],
            )
        # As the apiserver: the namespace is not defaulted from the path, it must be named.
        if isinstance(resource, dict) and resource.get("namespace", "") != namespace:
            raise ApiError.invalid(
                AUTHORIZATION,
                kind,
                "",
                [
                    (
                        "FieldValueInvalid",
                        "spec.resourceAttributes.namespace",
                        f'Invalid value: "{resource.get("namespace", "")}": '
                        "must match metadata.namespace",
                    )
                ],
            )
        groups = _strings(spec.get("groups"), "spec.groups", AUTHORIZATION, kind)
        user = spec.get("user") if isinstance(spec.get("user"), str) else ""
        attrs = self._attributes(spec, kind, str(user), groups)
        return self._decide({**metadata, "namespace": namespace}, spec, kind, attrs)

    def self_subject_access_review(self, body: Any, requester: UserInfo) -> Obj:
        metadata, spec = _object(body, AUTHORIZATION, "SelfSubjectAccessReview")
        attrs = self._attributes(
            spec, "SelfSubjectAccessReview", requester.username, requester.groups
        )
        return self._decide(metadata, spec, "SelfSubjectAccessReview", attrs)

    @staticmethod
    def _attributes(
        spec: dict[str, Any], kind: str, user: str, groups: tuple[str, ...]
    ) -> rbac.Attributes:
        resource, other = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if (resource is None) == (other is None) or not isinstance(resource or other, dict):
            raise ApiError.invalid(
                AUTHORIZATION,
                kind,
                "",
                [
                    (
                        "FieldValueInvalid",
                        "spec.resourceAttributes",
                        "Invalid value: exactly one of nonResourceAttributes or "
                        "resourceAttributes must be specified",
                    )
                ],
            )
        if isinstance(resource, dict):
            return rbac.Attributes(
                user=user,
                groups=groups,
                verb=str(resource.get("verb") or ""),
                namespace=str(resource.get("namespace") or ""),
                api_group=str(resource.get("group") or ""),
                resource=str(resource.get("resource") or ""),
                subresource=str(resource.get("subresource") or ""),
                name=str(resource.get("name") or ""),
            )
        assert isinstance(other, dict)
        return rbac.Attributes(
            user=user,
            groups=groups,
            verb=str(other.get("verb") or ""),
            path=str(other.get("path") or ""),
            resource_request=False,
        )

    def _decide(
        self, metadata: dict[str, Any], spec: dict[str, Any], kind: str, attrs: rbac.Attributes
    ) -> Obj:
        decision = rbac.authorize(self.store, attrs)
        status: dict[str, Any] = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        return _answer(AUTHORIZATION, kind, metadata, spec, status)
