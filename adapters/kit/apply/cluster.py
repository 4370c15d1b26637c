"""One authenticated connection to one Kubernetes cluster, speaking only what API servers offer.

`ClusterSession` wraps the `kubernetes.aio` client built from the operator's kubeconfig (TLS,
tokens, exec plugins are the client's business) or from a judged request kubeconfig's values
(`kube_clients`), and adds what the apply engine needs: kind → resource resolution through
`discovery` (refreshed on a miss so kinds whose CRDs were just created are found), server-side
apply that says whether anything changed, and the same retry policy around every call
(`api_requests`).
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from kubernetes.aio.client import ApiClient
from kubernetes.aio.client.exceptions import ApiException

from adapters.kit.apply.api_requests import APPLY_PATCH, ApiCall, ApiRequests, RetrySettings
from adapters.kit.apply.discovery import DISCOVERY_TTL_SECONDS, ApiResource, Discovery
from adapters.kit.apply.kube_clients import api_client
from adapters.kit.apply.kube_errors import ApplyError, kind_not_installed_detail
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import FIELD_MANAGER
from adapters.kit.model.records import ErrorDetail
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig
from serving.kubernetes_transport import resolve_proxy_once

__all__ = ["UNKNOWN", "ClusterSession", "Unknown"]

_LIST_PAGE = 500


class Unknown:
    """Marker type: a value the caller does not know (distinct from None)."""


UNKNOWN = Unknown()


def _dry_run(dry_run: bool) -> builtins.list[tuple[str, Any]]:
    return [("dryRun", "All")] if dry_run else []


class ClusterSession:
    """Async access to one cluster; use ``async with await ClusterSession.connect(...)``."""

    def __init__(
        self,
        api: ApiClient,
        *,
        name: str = "default",
        retry: RetrySettings | None = None,
        request_timeout: float = 30.0,
        on_retry: Callable[[], None] | None = None,
        discovery_ttl: float = DISCOVERY_TTL_SECONDS,
    ) -> None:
        resolve_proxy_once(api)
        self.name = name
        self._requests = ApiRequests(
            api, retry=retry, request_timeout=request_timeout, on_retry=on_retry
        )
        self._discovery = Discovery(self._requests, ttl=discovery_ttl)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: JudgedKubeconfig | None = None,
        kubeconfig_path: str | os.PathLike[str] | None = None,
        context: str | None = None,
        name: str = "default",
        retry: RetrySettings | None = None,
        on_retry: Callable[[], None] | None = None,
        discovery_ttl: float = DISCOVERY_TTL_SECONDS,
    ) -> ClusterSession:
        """Build a session from a judged request kubeconfig, the operator's kubeconfig file, or
        (neither) the defaults (`kube_clients.api_client`). ``on_retry`` is called before each
        retry of a failed request (e.g. to count retries in a metric).
        """
        api = await api_client(
            kubeconfig=kubeconfig, kubeconfig_path=kubeconfig_path, context=context or None
        )
        return cls(api, name=name, retry=retry, on_retry=on_retry, discovery_ttl=discovery_ttl)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._requests.api.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def server(self) -> str:
        """The API server URL from the kubeconfig."""
        return self._requests.server

    # -- discovery --------------------------------------------------------------------------

    async def server_version(self) -> str:
        """The cluster's Kubernetes version (``/version`` gitVersion, e.g. ``v1.34.1``).

        Charts are rendered for it (``.Capabilities.KubeVersion``).
        """
        call = ApiCall(method="GET", path="/version", verb="get", resource="version")
        _, body = await self._requests.send(call)
        version = body.get("gitVersion") if isinstance(body, dict) else None
        if not isinstance(version, str) or not version:
            raise ApplyError(
                ErrorDetail(
                    code="KUBERNETES_VERSION_UNKNOWN",
                    message=f"{self.server}/version gave no gitVersion",
                    probable_cause="the server is not a Kubernetes API server",
                    suggested_remediation="check the kubeconfig's server URL",
                )
            )
        return version

    async def api_versions(self) -> builtins.list[str]:
        """Every served group/version and group/version/Kind, as Helm's capabilities list them.

        Charts choose apiVersions with ``.Capabilities.APIVersions.Has`` (Consul's
        PodDisruptionBudget asks for ``policy/v1/PodDisruptionBudget``); see `discovery`.
        """
        return await self._discovery.api_versions()

    async def resource_for(self, api_version: str, kind: str) -> ApiResource | None:
        """Resolve a kind, refreshing its group-version's discovery once on a miss."""
        return await self._discovery.resource_for(api_version, kind)

    async def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the cluster serves this kind (e.g. the mesh's CRDs are installed)."""
        return await self.resource_for(api_version, kind) is not None

    async def _resource(self, ref: ObjectRef) -> ApiResource:
        resource = await self.resource_for(ref.api_version, ref.kind)
        if resource is None:
            raise ApplyError(kind_not_installed_detail(ref))
        return resource

    # -- objects ----------------------------------------------------------------------------

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> KubeObject | None:
        """Return the object, or None when it (or its kind) does not exist."""
        return await self.get_ref(
            ObjectRef(api_version=api_version, kind=kind, namespace=namespace, name=name)
        )

    async def get_ref(self, ref: ObjectRef) -> KubeObject | None:
        """`get` by reference."""
        resource = await self.resource_for(ref.api_version, ref.kind)
        if resource is None:
            return None
        call = ApiCall(
            method="GET",
            path=resource.path(ref.namespace, ref.name),
            verb="get",
            resource=resource.plural,
            ref=ref,
        )
        status, body = await self._requests.send(call, missing_ok=True)
        return body if status != 404 and isinstance(body, dict) else None

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> builtins.list[KubeObject]:
        """List objects (all namespaces when ``namespace`` is None); unknown kinds give []."""
        resource = await self.resource_for(api_version, kind)
        if resource is None:
            return []
        items: builtins.list[KubeObject] = []
        token = ""
        while True:
            query: builtins.list[tuple[str, Any]] = [("limit", _LIST_PAGE)]
            query += [("labelSelector", label_selector)] if label_selector else []
            query += [("continue", token)] if token else []
            call = ApiCall(
                method="GET",
                path=resource.path(namespace),
                verb="list",
                resource=resource.plural,
                query=query,
            )
            status, body = await self._requests.send(call, missing_ok=True)
            if status == 404:
                # The kind went away (its CRD was deleted): forget it, as discovery would.
                self._discovery.forget(api_version)
                return []
            body = body if isinstance(body, dict) else {}
            # List items omit apiVersion/kind; put them back so items are full manifests.
            items += [
                {"apiVersion": api_version, "kind": kind, **i} for i in body.get("items") or []
            ]
            token = str((body.get("metadata") or {}).get("continue") or "")
            if not token:
                return items

    async def apply(
        self,
        obj: KubeObject,
        *,
        field_manager: str = FIELD_MANAGER,
        force: bool = True,
        previous_version: str | Unknown | None = UNKNOWN,
        encoded: bytes | None = None,
        dry_run: bool = False,
    ) -> tuple[KubeObject, bool]:
        """Server-side apply ``obj``; True when it was created or its resourceVersion moved.

        ``previous_version`` is the object's resourceVersion before the apply when the caller
        already knows it (None: it did not exist); by default it is read first. ``encoded`` is
        ``obj`` as JSON bytes when the caller has them already (sent as they are). ``dry_run``
        sends ``dryRun=All``: the server answers with the object it would store, and stores
        nothing (the returned flag then means nothing: compare the answer yourself).
        """
        ref = ObjectRef.from_manifest(obj)
        resource = await self._resource(ref)
        if resource.namespaced and not ref.namespace:
            raise ApplyError(_namespace_required(ref))
        previous = await self._version_before(ref, previous_version)
        call = ApiCall(
            method="PATCH",
            path=resource.path(ref.namespace if resource.namespaced else None, ref.name),
            verb="apply",
            resource=resource.plural,
            ref=ref,
            query=[("fieldManager", field_manager), ("force", force), *_dry_run(dry_run)],
            body=obj if encoded is None else encoded,
            content_type=APPLY_PATCH,
        )
        status, body = await self._patch(call, ref)
        applied: KubeObject = body if isinstance(body, dict) else {}
        if previous is None or status == 201:
            return applied, True
        return applied, previous != (applied.get("metadata") or {}).get("resourceVersion")

    async def _version_before(
        self, ref: ObjectRef, previous_version: str | Unknown | None
    ) -> str | None:
        """The object's resourceVersion before a write: as the caller knows it, else read."""
        if not isinstance(previous_version, Unknown):
            return previous_version
        before = await self.get_ref(ref)
        return (before.get("metadata") or {}).get("resourceVersion") if before else None

    async def _patch(self, call: ApiCall, ref: ObjectRef) -> tuple[int, Any]:
        """Send an apply. Applying creates missing objects, so a 404 means the kind (or the
        namespace) is not there: a CRD deleted since discovery was read says so by its kind."""
        try:
            return await self._requests.send(call)
        except ApplyError as exc:
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                self._discovery.forget(ref.api_version)
                if await self.resource_for(ref.api_version, ref.kind) is None:
                    raise ApplyError(kind_not_installed_detail(ref)) from cause
            raise

    async def delete(
        self, ref: ObjectRef, propagation: str = "Background", *, dry_run: bool = False
    ) -> bool:
        """Delete ``ref``; False when it (or its kind) was already gone. ``dry_run`` sends
        ``dryRun=All``: the server checks the delete and deletes nothing."""
        resource = await self.resource_for(ref.api_version, ref.kind)
        if resource is None:
            return False
        call = ApiCall(
            method="DELETE",
            path=resource.path(ref.namespace if resource.namespaced else None, ref.name),
            verb="delete",
            resource=resource.plural,
            ref=ref,
            query=[("propagationPolicy", propagation), *_dry_run(dry_run)],
        )
        status, _ = await self._requests.send(call, missing_ok=True)
        return status != 404


def _namespace_required(ref: ObjectRef) -> ErrorDetail:
    return ErrorDetail(
        code="NAMESPACE_REQUIRED",
        message=f"{ref} is namespaced but names no namespace",
        probable_cause="the plan was built without defaulting namespaces",
        suggested_remediation="set metadata.namespace (planning normally does this)",
    )
