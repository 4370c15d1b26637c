"""One authenticated connection to one Kubernetes cluster, speaking only what API servers offer.

`ClusterSession` wraps the `kubernetes.aio` client built from the operator's kubeconfig (TLS,
tokens, exec plugins are the client's business) or from a judged request kubeconfig's values
(`request_kubeconfigs`: inline credentials only), and adds what the apply engine needs: kind →
resource resolution through discovery (cached per group-version, refreshed on a miss so kinds
whose CRDs were just created are found), server-side apply that says whether anything changed,
and the same retry policy around every call.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import structlog
import yaml
from kubernetes.aio import config as _typed_kube_config
from kubernetes.aio.client import ApiClient, Configuration
from kubernetes.aio.client.exceptions import ApiException
from tenacity import AsyncRetrying

from adapters.kit.apply.kube_errors import (
    ApplyError,
    describe_error,
    kind_not_installed_detail,
)
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import FIELD_MANAGER
from adapters.kit.model.records import ErrorDetail
from adapters.kit.model.request_kubeconfigs import JudgedKubeconfig
from serving.kubernetes_transport import resolve_proxy_once
from serving.retry_policies import call_retrying, is_retryable_kubernetes_error, kubernetes_retry

__all__ = ["UNKNOWN", "ApiResource", "ClusterSession", "RetrySettings", "Unknown", "call_json"]

log = structlog.get_logger(__name__)

T = TypeVar("T")

APPLY_PATCH = "application/apply-patch+yaml"
_APPLY_PATCH_ENCODED = f"{APPLY_PATCH}; charset=utf-8"
_LIST_PAGE = 500
_DISCOVERY_CONCURRENCY = 8
AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
"""Accept for `/api` and `/apis`: the aggregated documents when served, else the legacy ones."""
DISCOVERY_TTL_SECONDS = 300.0
"""How long one group-version's kinds are trusted for render capabilities (kubectl and Helm
trust their discovery cache for hours); kinds are also re-read on every miss."""

# The client's config loaders and response objects carry no annotations.
kube_config: Any = _typed_kube_config


async def call_json(
    api: Any,
    method: str,
    path: str,
    *,
    query: list[tuple[str, Any]] | None = None,
    body: Any = None,
    content_type: str | None = None,
    request_timeout: float,
    accept: str = "application/json",
) -> tuple[int, Any]:
    """One request through a `kubernetes.aio` client, once: (status, decoded JSON body or None).

    The client's generated API classes know only built-in kinds; this speaks to any path, with
    the client's authentication. A non-2xx answer raises the client's ``ApiException``.
    """
    if content_type == APPLY_PATCH and isinstance(body, bytes):
        content_type = _APPLY_PATCH_ENCODED
    elif content_type == APPLY_PATCH and isinstance(body, dict):
        # The client's serializer walks every value of a body in Python before encoding it
        # (an Istio CRD's schema: thousands of calls); an applied object is plain JSON already.
        # A ready `bytes` body passes through only under a media type the client does not
        # re-encode, so the same type is named with its charset parameter.
        body = json.dumps(body, separators=(",", ":")).encode()
        content_type = _APPLY_PATCH_ENCODED
    headers = {"Accept": accept}
    if content_type:
        headers["Content-Type"] = content_type
    serialized = await api.param_serialize(
        method,
        path,
        query_params=query or [],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    response = await api.call_api(*serialized, _request_timeout=request_timeout)
    data = await response.read()
    text = data.decode("utf-8", "replace") if data else ""
    if not 200 <= response.status <= 299:
        raise ApiException(http_resp=response, body=text)
    return response.status, (json.loads(text) if text else None)


@dataclass(frozen=True, kw_only=True)
class ApiResource:
    """One served kind: where its objects live in the REST API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        """The collection (or, with ``name``, object) URL path."""
        base = f"/api/{self.api_version}" if "/" not in self.api_version else ""
        base = base or f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


class Unknown:
    """Marker type: a value the caller does not know (distinct from None)."""


UNKNOWN = Unknown()


@dataclass(frozen=True, kw_only=True)
class RetrySettings:
    """How transient API failures are retried (`serving.retry_policies.kubernetes_retry`)."""

    attempts: int = 8
    initial_delay: float = 0.05
    max_delay: float = 5.0
    max_retry_after: float = 10.0
    """Longest Retry-After we honour; a server asking for longer is capped (we still retry)."""
    max_elapsed: float = 60.0
    """Longest a failing call keeps retrying. An API server that accepts connections but never
    answers used to cost 8 attempts x the 30 s request timeout per call (4 minutes), per cluster
    and per call, queued behind the session's connection pool: a many-cluster request held an
    operation slot for over an hour."""


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
        self._api: Any = api
        resolve_proxy_once(api)
        self.name = name
        self._retry = retry or RetrySettings()
        self._on_retry = on_retry
        self._request_timeout = request_timeout
        self._discovery: dict[str, dict[str, ApiResource] | None] = {}
        self._discovery_generation: dict[str, int] = {}
        self._discovery_read_at: dict[str, float] = {}
        self._discovery_ttl = discovery_ttl
        self._discovery_locks: dict[str, asyncio.Lock] = {}

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
        (neither) the defaults.

        A request's kubeconfig arrives only as a `JudgedKubeconfig` (inline credentials, an
        allowed server) and never reaches the client's config loader: the client is configured
        from its values alone. The operator's file and the defaults (`$KUBECONFIG`,
        `~/.kube/config`, else the in-cluster ServiceAccount) are loaded by the client as
        kubectl would. ``on_retry`` is called before each retry of a failed request (e.g. to
        count retries in a metric).
        """
        context = context or None
        try:
            if kubeconfig is not None:
                api = _judged_client(kubeconfig)
            else:
                path = kubeconfig_path or _default_kubeconfig_path()
                if path is not None:
                    api = await kube_config.new_client_from_config(
                        config_file=str(path), context=context, persist_config=False
                    )
                else:
                    configuration = Configuration()
                    kube_config.load_incluster_config(client_configuration=configuration)
                    api = ApiClient(configuration=configuration)
        except (kube_config.ConfigException, yaml.YAMLError, OSError, ValueError) as exc:
            raise ApplyError(_bad_kubeconfig(str(exc))) from exc
        return cls(api, name=name, retry=retry, on_retry=on_retry, discovery_ttl=discovery_ttl)

    async def close(self) -> None:
        """Close the HTTP connection pool."""
        await self._api.close()

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
        return str(self._api.configuration.host)

    # -- HTTP -------------------------------------------------------------------------------

    async def _call_once(
        self,
        method: str,
        path: str,
        *,
        query: builtins.list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        return await call_json(
            self._api,
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            request_timeout=self._request_timeout,
            accept=accept,
        )

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        settings = self._retry
        hook = self._on_retry

        def policy() -> AsyncRetrying:
            return kubernetes_retry(
                attempts=settings.attempts,
                initial_delay=settings.initial_delay,
                max_delay=settings.max_delay,
                retry_after_cap=settings.max_retry_after,
                on_retry=(lambda _state: hook()) if hook is not None else None,
                max_elapsed=settings.max_elapsed,
            )

        return await call_retrying(call, policy, is_retryable_kubernetes_error)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        ref: ObjectRef | None = None,
        query: builtins.list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        missing_ok: bool = False,
        accept: str = "application/json",
    ) -> tuple[int, Any]:
        """One retried request; 404 gives (404, None) when ``missing_ok``, else ApplyError."""

        async def call() -> tuple[int, Any]:
            return await self._call_once(
                method, path, query=query, body=body, content_type=content_type, accept=accept
            )

        try:
            return await self._retrying(call)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return 404, None
            raise ApplyError(
                describe_error(exc, verb=verb, resource=resource, ref=ref, server=self.server)
            ) from exc
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            raise ApplyError(
                describe_error(exc, verb=verb, resource=resource, ref=ref, server=self.server)
            ) from exc

    # -- discovery --------------------------------------------------------------------------

    async def _fetch_group_version(self, api_version: str) -> dict[str, ApiResource] | None:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        status, body = await self._request(
            "GET", path, verb="discover", resource=api_version, missing_ok=True
        )
        if status == 404 or not isinstance(body, dict):
            return None
        kinds: dict[str, ApiResource] = {}
        for entry in body.get("resources") or []:
            plural = str(entry.get("name", ""))
            if not plural or "/" in plural:  # subresources such as deployments/status
                continue
            kind = str(entry.get("kind", ""))
            kinds.setdefault(
                kind,
                ApiResource(
                    api_version=api_version,
                    kind=kind,
                    plural=plural,
                    namespaced=bool(entry.get("namespaced")),
                ),
            )
        return kinds

    async def server_version(self) -> str:
        """The cluster's Kubernetes version (``/version`` gitVersion, e.g. ``v1.34.1``).

        Charts are rendered for it (``.Capabilities.KubeVersion``).
        """
        _, body = await self._request("GET", "/version", verb="get", resource="version")
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
        PodDisruptionBudget asks for ``policy/v1/PodDisruptionBudget``). Servers with aggregated
        discovery (1.30+) answer everything in two requests, always current; from older servers
        each group/version's document is read once and kept for resolving kinds (re-read after
        the TTL or on a miss).
        """
        (_, core), (_, groups) = await asyncio.gather(
            self._request(
                "GET", "/api", verb="discover", resource="api", accept=AGGREGATED_DISCOVERY
            ),
            self._request(
                "GET", "/apis", verb="discover", resource="apis", accept=AGGREGATED_DISCOVERY
            ),
        )
        current: dict[str, dict[str, ApiResource]] = {}
        versions: builtins.list[str] = []
        for document in (core, groups):
            if _is_aggregated(document):
                aggregated = _aggregated_kinds(document)
                current.update(aggregated)
                versions.extend(aggregated)
            elif isinstance(document, dict) and document.get("kind") == "APIVersions":
                versions.extend(str(v) for v in document.get("versions") or [])
            else:
                for group in (document or {}).get("groups") or []:
                    versions.extend(
                        str(v.get("groupVersion", "")) for v in group.get("versions") or []
                    )
        served = [v for v in dict.fromkeys(versions) if v]
        # Group-versions no longer served (their CRDs were deleted) are forgotten; kinds read
        # longer ago than the TTL are read again; aggregated answers replace what was known.
        stale_before = time.monotonic() - self._discovery_ttl
        for known in builtins.list(self._discovery):
            if known not in served or self._discovery_read_at.get(known, 0.0) < stale_before:
                self._forget(known)
        now = time.monotonic()
        for api_version, kinds_of in current.items():
            self._discovery[api_version] = kinds_of
            self._discovery_generation[api_version] = (
                self._discovery_generation.get(api_version, 0) + 1
            )
            self._discovery_read_at[api_version] = now
        limit = asyncio.Semaphore(_DISCOVERY_CONCURRENCY)

        async def kinds(api_version: str) -> builtins.list[str]:
            found = self._discovery.get(api_version)
            if found is None:
                async with limit:
                    found = await self._refresh(api_version)
            return [f"{api_version}/{kind}" for kind in found or {}]

        per_version = await asyncio.gather(*(kinds(v) for v in served))
        return sorted({*served, *(k for ks in per_version for k in ks)})

    async def resource_for(self, api_version: str, kind: str) -> ApiResource | None:
        """Resolve a kind, refreshing its group-version's discovery once on a miss."""
        cached = self._discovery.get(api_version)
        if cached is not None and kind in cached:
            return cached[kind]
        found = await self._refresh(api_version)
        return found.get(kind) if found is not None else None

    async def _refresh(self, api_version: str) -> dict[str, ApiResource] | None:
        """Read one group-version's discovery again (None: the cluster does not serve it)."""
        seen = self._discovery_generation.get(api_version, 0)
        lock = self._discovery_locks.setdefault(api_version, asyncio.Lock())
        async with lock:
            # Someone refreshed while we waited: use their answer rather than asking again.
            if self._discovery_generation.get(api_version, 0) == seen:
                self._discovery[api_version] = await self._fetch_group_version(api_version)
                self._discovery_generation[api_version] = seen + 1
                self._discovery_read_at[api_version] = time.monotonic()
        return self._discovery.get(api_version)

    def _forget(self, api_version: str) -> None:
        self._discovery.pop(api_version, None)
        self._discovery_generation[api_version] = self._discovery_generation.get(api_version, 0) + 1

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
        status, body = await self._request(
            "GET",
            resource.path(ref.namespace, ref.name),
            verb="get",
            resource=resource.plural,
            ref=ref,
            missing_ok=True,
        )
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
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            status, body = await self._request(
                "GET",
                resource.path(namespace),
                verb="list",
                resource=resource.plural,
                query=query,
                missing_ok=True,
            )
            if status == 404:
                # The kind went away (its CRD was deleted): forget it, as discovery would.
                self._forget(api_version)
                return []
            body = body if isinstance(body, dict) else {}
            for item in body.get("items") or []:
                # List items omit apiVersion/kind; put them back so items are full manifests.
                items.append({"apiVersion": api_version, "kind": kind, **item})
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
        namespace = ref.namespace if resource.namespaced else None
        if resource.namespaced and not namespace:
            raise ApplyError(
                ErrorDetail(
                    code="NAMESPACE_REQUIRED",
                    message=f"{ref} is namespaced but names no namespace",
                    probable_cause="the plan was built without defaulting namespaces",
                    suggested_remediation="set metadata.namespace (planning normally does this)",
                )
            )
        if isinstance(previous_version, Unknown):
            before = await self.get_ref(ref)
            previous = (before.get("metadata") or {}).get("resourceVersion") if before else None
        else:
            previous = previous_version
        try:
            status, body = await self._request(
                "PATCH",
                resource.path(namespace, ref.name),
                verb="apply",
                resource=resource.plural,
                ref=ref,
                query=[("fieldManager", field_manager), ("force", force)]
                + ([("dryRun", "All")] if dry_run else []),
                body=obj if encoded is None else encoded,
                content_type=APPLY_PATCH,
            )
        except ApplyError as exc:
            # Applying creates missing objects, so a 404 means the kind (or the namespace) is
            # not there: a CRD deleted since discovery was read says so by its kind.
            cause = exc.__cause__
            if isinstance(cause, ApiException) and cause.status == 404:
                self._forget(ref.api_version)
                if await self.resource_for(ref.api_version, ref.kind) is None:
                    raise ApplyError(kind_not_installed_detail(ref)) from cause
            raise
        applied: KubeObject = body if isinstance(body, dict) else {}
        if previous is None or status == 201:
            return applied, True
        current = (applied.get("metadata") or {}).get("resourceVersion")
        return applied, previous != current

    async def delete(
        self, ref: ObjectRef, propagation: str = "Background", *, dry_run: bool = False
    ) -> bool:
        """Delete ``ref``; False when it (or its kind) was already gone. ``dry_run`` sends
        ``dryRun=All``: the server checks the delete and deletes nothing."""
        resource = await self.resource_for(ref.api_version, ref.kind)
        if resource is None:
            return False
        status, _ = await self._request(
            "DELETE",
            resource.path(ref.namespace if resource.namespaced else None, ref.name),
            verb="delete",
            resource=resource.plural,
            ref=ref,
            query=[("propagationPolicy", propagation)] + ([("dryRun", "All")] if dry_run else []),
            missing_ok=True,
        )
        return status != 404


def _is_aggregated(document: Any) -> bool:
    return isinstance(document, dict) and document.get("kind") == "APIGroupDiscoveryList"


def _aggregated_kinds(document: dict[str, Any]) -> dict[str, dict[str, ApiResource]]:
    """group/version → kind → resource, from an APIGroupDiscoveryList (apidiscovery v2)."""
    found: dict[str, dict[str, ApiResource]] = {}
    for group in document.get("items") or []:
        name = str((group.get("metadata") or {}).get("name") or "")
        for version in group.get("versions") or []:
            api_version = f"{name}/{version.get('version', '')}" if name else version.get("version")
            kinds: dict[str, ApiResource] = {}
            for entry in version.get("resources") or []:
                kind = str((entry.get("responseKind") or {}).get("kind", ""))
                plural = str(entry.get("resource", ""))
                if kind and plural:
                    kinds.setdefault(
                        kind,
                        ApiResource(
                            api_version=str(api_version),
                            kind=kind,
                            plural=plural,
                            namespaced=entry.get("scope") == "Namespaced",
                        ),
                    )
            found[str(api_version)] = kinds
    return found


def _judged_client(judged: JudgedKubeconfig) -> ApiClient:
    """A client configured from a judged request kubeconfig's values, and nothing else.

    Python's TLS loads a client certificate only from files: it is written to a private
    temporary directory, loaded when the client is built, and removed at once.
    """
    configuration = Configuration(host=judged.server)
    if judged.authorization:
        configuration.api_key["BearerToken"] = judged.authorization
    configuration.ca_cert_data = judged.certificate_authority or None
    configuration.tls_server_name = judged.tls_server_name or None
    if not judged.client_certificate:
        return ApiClient(configuration=configuration)
    with tempfile.TemporaryDirectory(prefix="meshplane-client-") as directory:
        cert_file, key_file = Path(directory) / "tls.crt", Path(directory) / "tls.key"
        for path, content in (
            (cert_file, judged.client_certificate),
            (key_file, judged.client_key),
        ):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(content)
        configuration.cert_file, configuration.key_file = str(cert_file), str(key_file)
        api = ApiClient(configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    return api


def _default_kubeconfig_path() -> Path | None:
    env = os.environ.get("KUBECONFIG", "")
    for candidate in [p for p in env.split(os.pathsep) if p] or [kube_config_default()]:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    return None


def kube_config_default() -> str:
    """The client's default kubeconfig location (``~/.kube/config``)."""
    return str(kube_config.KUBE_CONFIG_DEFAULT_LOCATION)


def _bad_kubeconfig(reason: str) -> ErrorDetail:
    return ErrorDetail(
        code="KUBECONFIG_INVALID",
        message=f"cannot load the kubeconfig: {reason}",
        probable_cause="the kubeconfig is malformed, or names a context/user that is missing",
        suggested_remediation="check the kubeconfig (kubectl config view) and the context name",
    )
