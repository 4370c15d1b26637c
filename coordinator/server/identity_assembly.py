"""The coordinator's identity parts built from its settings, started and stopped together."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from coordinator.server.identity.access_review import SubjectAccessReviewAuthorizer
from coordinator.server.identity.audit import AuditLog, AuditRetention
from coordinator.server.identity.authentication import Authenticator
from coordinator.server.identity.authorization import Authorizer, OpenAuthorizer, RoleAuthorizer
from coordinator.server.identity.gate import Gate
from coordinator.server.identity.permissions import CallFacts
from coordinator.server.identity.token_file import TokenFile, TokenFileError
from coordinator.server.identity.token_review import KubernetesTokenReviewer
from coordinator.server.registry import Registry
from coordinator.server.settings import CoordinatorSettings, SettingsError
from coordinator.store.base import Store

__all__ = ["Identity", "build_identity"]

_log = structlog.get_logger(__name__)


@dataclass(kw_only=True)
class Identity:
    """The gate and what it relies on that has a lifecycle."""

    gate: Gate
    audit: AuditLog
    authenticator: Authenticator
    token_reviewer: KubernetesTokenReviewer | None = None
    access_reviewer: SubjectAccessReviewAuthorizer | None = None

    async def start(self) -> None:
        """Open Kubernetes clients and start audit pruning; warn when anyone may do anything."""
        if self.token_reviewer is not None:
            await self.token_reviewer.start()
        if self.access_reviewer is not None:
            await self.access_reviewer.start()
        self.audit.start()
        if not self.authenticator.configured:
            _log.warning(
                "auth.anonymous_access",
                message="no authentication is configured and --allow-anonymous is set: anyone "
                "who reaches this port may install and delete meshes, cancel operations and "
                "read everything",
            )
        elif self.authenticator.allow_anonymous:
            _log.warning(
                "auth.anonymous_callers_accepted",
                message="--allow-anonymous: calls without credentials run as system:anonymous",
            )

    async def stop(self) -> None:
        """Stop pruning and close the Kubernetes clients."""
        await self.audit.stop()
        if self.access_reviewer is not None:
            await self.access_reviewer.stop()
        if self.token_reviewer is not None:
            await self.token_reviewer.stop()


def build_identity(settings: CoordinatorSettings, *, store: Store, registry: Registry) -> Identity:
    """Authentication, authorization and audit as configured; SettingsError when unusable."""
    problem = settings.identity_problem()
    if problem is not None:
        raise SettingsError(problem)
    authenticator, token_reviewer = _authentication(settings)
    access_reviewer = (
        SubjectAccessReviewAuthorizer(
            settings.kubeconfig, cache_seconds=settings.auth_cache_seconds
        )
        if settings.authz_kubernetes
        else None
    )
    audit = _audit_log(settings, store)
    facts = CallFacts(
        catalogue=registry.catalogue,
        meshes=registry.meshes,
        operation=store.get_operation,
        protected_namespaces=frozenset(settings.protected_namespaces),
    )
    authorizer = _authorizer(authenticator, access_reviewer)
    gate = Gate(authenticator=authenticator, authorizer=authorizer, facts=facts, audit=audit)
    return Identity(
        gate=gate,
        audit=audit,
        authenticator=authenticator,
        token_reviewer=token_reviewer,
        access_reviewer=access_reviewer,
    )


def _authentication(
    settings: CoordinatorSettings,
) -> tuple[Authenticator, KubernetesTokenReviewer | None]:
    """The authenticator (token file, TokenReview, client certificates) and its reviewer."""
    try:
        token_file = (
            None if settings.token_auth_file is None else TokenFile(settings.token_auth_file)
        )
    except TokenFileError as exc:
        raise SettingsError(f"--token-auth-file: {exc}") from exc
    token_reviewer = (
        KubernetesTokenReviewer(
            settings.kubeconfig,
            audiences=settings.authn_kubernetes_audiences,
            cache_seconds=settings.auth_cache_seconds,
        )
        if settings.authn_kubernetes
        else None
    )
    authenticator = Authenticator(
        token_file=token_file,
        token_reviewer=token_reviewer,
        client_certificates=settings.client_certificates,
        allow_anonymous=settings.allow_anonymous,
    )
    return authenticator, token_reviewer


def _authorizer(
    authenticator: Authenticator, access_reviewer: SubjectAccessReviewAuthorizer | None
) -> Authorizer:
    """SubjectAccessReview when configured, else the roles, else (nobody authenticated) open."""
    if access_reviewer is not None:
        return access_reviewer
    if authenticator.configured:
        return RoleAuthorizer()
    return OpenAuthorizer()


def _audit_log(settings: CoordinatorSettings, store: Store) -> AuditLog:
    """The audit trail in the store, pruned as the settings say."""
    max_age = settings.audit_retention
    return AuditLog(
        store,
        AuditRetention(
            max_age_seconds=None if max_age is None else max_age.total_seconds(),
            max_records=settings.audit_retention_count,
            prune_interval_seconds=settings.retention.interval_seconds,
        ),
    )
