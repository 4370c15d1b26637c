"""``--authz-kubernetes``: each access asked of the cluster as a SubjectAccessReview.

Resource attributes are in API group ``meshplane.io`` (see ``permissions.GRANTS`` for the
resources and verbs), with the call's namespace and resource name, so Roles, ClusterRoles and
their bindings grant meshplane permissions. Answers are cached per subject and access for a
short time (``--auth-cache``) in a bounded cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from coordinator.server.identity.answer_cache import AnswerCache
from coordinator.server.identity.authorization import Denial
from coordinator.server.identity.permissions import API_GROUP, Access
from coordinator.server.identity.review_client import ReviewClient
from coordinator.server.identity.subjects import AUTHENTICATED_GROUP, Subject
from coordinator.server.kube_api import kube_client

__all__ = ["SubjectAccessReviewAuthorizer"]

_Key = tuple[str, str, tuple[str, ...], Access]


class SubjectAccessReviewAuthorizer:
    """Asks ``authorization.k8s.io/v1`` SubjectAccessReview per access."""

    def __init__(
        self, kubeconfig: Path | None, *, cache_seconds: float = 10.0, max_entries: int = 8192
    ) -> None:
        self._cache: AnswerCache[_Key, str | None] = AnswerCache(
            ttl_seconds=cache_seconds, max_entries=max_entries
        )
        self._client = ReviewClient(
            kubeconfig, api="SubjectAccessReview", purpose="check the permission"
        )

    async def start(self) -> None:
        """Open the API client."""
        await self._client.start()

    async def stop(self) -> None:
        """Close the API client."""
        await self._client.stop()

    async def authorize(self, subject: Subject, access: Access) -> Denial | None:
        """None when RBAC (or whatever authorizes the cluster) allows the access."""
        groups = subject.groups
        if not subject.anonymous and AUTHENTICATED_GROUP not in groups:
            groups = (*groups, AUTHENTICATED_GROUP)
        key: _Key = (subject.user, subject.uid, groups, access)
        hit, reason = self._cache.get(key)
        if not hit:
            reason = await self._review(subject, groups, access)
            self._cache.put(key, reason)
        return None if reason is None else Denial(access=access, reason=reason)

    async def _review(
        self, subject: Subject, groups: tuple[str, ...], access: Access
    ) -> str | None:
        resource, _, subresource = access.resource.partition("/")
        attributes = {
            "group": API_GROUP,
            "resource": resource,
            "subresource": subresource,
            "verb": access.verb,
            "namespace": access.namespace,
            "name": access.name,
        }
        spec: dict[str, Any] = {
            "user": subject.user,
            "groups": list(groups),
            "resourceAttributes": {k: v for k, v in attributes.items() if v},
        }
        if subject.uid:
            spec["uid"] = subject.uid
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        answer = await self._client.ask(
            lambda api: kube_client.AuthorizationV1Api(api).create_subject_access_review(body)
        )
        status = answer.status
        if status is not None and status.allowed and not status.denied:
            return None
        detail = (status.reason or status.evaluation_error or "") if status is not None else ""
        return "Kubernetes RBAC does not allow it" + (f" ({detail[:200]})" if detail else "")
