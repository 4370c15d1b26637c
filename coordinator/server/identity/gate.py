"""The door every coordinator call passes: authenticate, authorize, audit, then serve.

A ``grpc.aio`` server interceptor wraps the handler of every method except gRPC health and
reflection (probes and tooling stay open). Per call it authenticates the caller
(UNAUTHENTICATED saying how to), works out what the call needs from the one permission table
(``permissions.RULES``; a method without a rule is refused), asks the authorizer
(PERMISSION_DENIED naming verb, resource and namespace), binds the caller as the request's
``username`` where the request carries one, and makes the caller the current subject for the
call (forwarded to adapters as identity headers). Mutating calls and every refusal are audited
with how they ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import grpc
import grpc.aio
import structlog

from coordinator.server.identity.audit import AuditLog
from coordinator.server.identity.authentication import (
    AuthenticationError,
    Authenticator,
    ReviewUnavailable,
)
from coordinator.server.identity.authorization import Authorizer, first_denial
from coordinator.server.identity.permissions import (
    RULES,
    Call,
    CallFacts,
    CallScope,
    MethodRule,
    UsernameMismatch,
)
from coordinator.server.identity.subjects import CURRENT_SUBJECT, Subject
from coordinator.store.audit_trail import AuditRecord

__all__ = ["OPEN_SERVICES", "Gate"]

_log = structlog.get_logger(__name__)

OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
"""Method prefixes served without authentication."""

MESH_HEADER = "x-meshplane-mesh"


@dataclass(frozen=True, kw_only=True)
class _Admitted:
    """A call that may proceed: who, what it touches, and its request as the servicer sees it."""

    subject: Subject
    scope: CallScope
    request: Any


class _Refused(Exception):
    """A check refused the call: how to audit it and the status to end it with."""

    def __init__(
        self,
        *,
        decision: str,
        code: Any,
        message: str,
        subject: Subject | None = None,
        scope: CallScope | None = None,
    ) -> None:
        super().__init__(message)
        self.decision = decision
        self.code = code
        self.message = message
        self.subject = subject
        self.scope = scope or CallScope(accesses=())


class Gate(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authentication, authorization and audit for every non-open method."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        authorizer: Authorizer,
        facts: CallFacts,
        audit: AuditLog | None,
    ) -> None:
        self._authenticator = authenticator
        self._authorizer = authorizer
        self._facts = facts
        self._audit = audit
        # With no way to authenticate (--allow-anonymous alone), requests keep their username.
        self._binds_subject = authenticator.configured

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: Any
    ) -> Any:
        """The method's handler wrapped in the checks (health and reflection unwrapped)."""
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        rule = RULES.get(method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, rule, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, rule, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # No contract has client-streaming methods; one added later is refused until it has a
        # rule and a wrapper here.
        return grpc.stream_unary_rpc_method_handler(
            self._refuse_streaming_request(method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    # -- wrappers -------------------------------------------------------------------------

    def _unary(
        self, method: str, rule: MethodRule | None, behavior: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        async def checked(request: Any, context: Any) -> Any:
            admitted = await self._admit(method, rule, request, context)
            token = CURRENT_SUBJECT.set(admitted.subject if self._binds_subject else None)
            outcome = "OK"
            try:
                response = await behavior(admitted.request, context)
                if rule is not None and rule.answer_operation_id is not None:
                    admitted = _with_operation_id(admitted, rule.answer_operation_id(response))
                return response
            except BaseException:
                outcome = _code_name(context)
                raise
            finally:
                CURRENT_SUBJECT.reset(token)
                if admitted.scope.mutating:
                    await self._write(method, context, admitted, "allow", outcome)

        return checked

    def _streaming(
        self, method: str, rule: MethodRule | None, behavior: Callable[[Any, Any], Any]
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        async def checked(request: Any, context: Any) -> AsyncIterator[Any]:
            admitted = await self._admit(method, rule, request, context)
            token = CURRENT_SUBJECT.set(admitted.subject if self._binds_subject else None)
            outcome = "OK"
            try:
                async for response in behavior(admitted.request, context):
                    yield response
            except BaseException:
                outcome = _code_name(context)
                raise
            finally:
                with contextlib.suppress(ValueError):  # a stream closed from another context
                    CURRENT_SUBJECT.reset(token)
                if admitted.scope.mutating:
                    await self._write(method, context, admitted, "allow", outcome)

        return checked

    def _refuse_streaming_request(self, method: str) -> Callable[[Any, Any], Awaitable[Any]]:
        async def refuse(request_iterator: Any, context: Any) -> Any:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, f"{method} has no rule")

        return refuse

    # -- the checks -----------------------------------------------------------------------

    async def _admit(
        self, method: str, rule: MethodRule | None, request: Any, context: Any
    ) -> _Admitted:
        """The call as it may proceed; a refusal is audited and ends the call."""
        metadata = tuple(context.invocation_metadata() or ())
        try:
            subject = await self._authenticate(metadata, context)
            if rule is None:
                raise _Refused(
                    subject=subject,
                    decision="deny",
                    code=grpc.StatusCode.PERMISSION_DENIED,
                    message=f"{method} is not in the coordinator's permission table; nobody may "
                    "call it",
                )
            mesh = next((str(v).strip().lower() for k, v in metadata if k == MESH_HEADER), "")
            scope = await rule.scope_of(
                Call(request=request, mesh_header=mesh, subject=subject), self._facts
            )
            await self._authorize(subject, scope)
            return self._bind(rule, _Admitted(subject=subject, scope=scope, request=request))
        except _Refused as refused:
            await self._refuse(context, method, refused)

    async def _authenticate(self, metadata: tuple[Any, ...], context: Any) -> Subject:
        """The caller; UNAUTHENTICATED (or UNAVAILABLE when the review is away) otherwise."""
        try:
            return await self._authenticator.authenticate(metadata, context.auth_context())
        except (AuthenticationError, ReviewUnavailable) as exc:
            code = (
                grpc.StatusCode.UNAVAILABLE
                if isinstance(exc, ReviewUnavailable)
                else grpc.StatusCode.UNAUTHENTICATED
            )
            raise _Refused(decision="unauthenticated", code=code, message=str(exc)) from exc

    async def _authorize(self, subject: Subject, scope: CallScope) -> None:
        """PERMISSION_DENIED naming the first access refused (UNAVAILABLE: the review is away)."""
        try:
            denial = await first_denial(self._authorizer, subject, scope.accesses)
        except ReviewUnavailable as exc:
            raise _Refused(
                subject=subject,
                scope=scope,
                decision="deny",
                code=grpc.StatusCode.UNAVAILABLE,
                message=str(exc),
            ) from exc
        if denial is not None:
            raise _Refused(
                subject=subject,
                scope=scope,
                decision="deny",
                code=grpc.StatusCode.PERMISSION_DENIED,
                message=denial.message(subject),
            )

    def _bind(self, rule: MethodRule, admitted: _Admitted) -> _Admitted:
        """The request with the caller bound as its username, where the rule binds one."""
        if rule.bind_subject is None or not self._binds_subject:
            return admitted
        try:
            request = rule.bind_subject(admitted.request, admitted.subject)
        except UsernameMismatch as exc:
            raise _Refused(
                subject=admitted.subject,
                scope=admitted.scope,
                decision="allow",
                code=grpc.StatusCode.INVALID_ARGUMENT,
                message=str(exc),
            ) from exc
        return _Admitted(subject=admitted.subject, scope=admitted.scope, request=request)

    async def _refuse(self, context: Any, method: str, refused: _Refused) -> NoReturn:
        """Audit the refusal, then end the call with its status."""
        subject = refused.subject or Subject(user="")
        audited = _Admitted(subject=subject, scope=refused.scope, request=None)
        await self._write(
            method, context, audited, refused.decision, refused.code.name, reason=refused.message
        )
        await _abort(context, refused.code, refused.message)

    async def _write(
        self,
        method: str,
        context: Any,
        admitted: _Admitted,
        decision: str,
        outcome: str,
        *,
        reason: str = "",
    ) -> None:
        if self._audit is None:
            return
        subject = admitted.subject
        if not reason and outcome != "OK":
            reason = _details(context)
        await self._audit.record(
            AuditRecord(
                recorded_at=datetime.now(UTC),
                subject=subject.user,
                groups=subject.groups,
                uid=subject.uid,
                authenticated_by=subject.authenticated_by,
                source=str(context.peer() or ""),
                method=method,
                mesh=admitted.scope.mesh,
                operation_id=admitted.scope.operation_id,
                namespace=admitted.scope.namespace,
                decision=decision,
                outcome=outcome,
                reason=reason,
            )
        )


def _with_operation_id(admitted: _Admitted, operation_id: str) -> _Admitted:
    if not operation_id or operation_id == admitted.scope.operation_id:
        return admitted
    scope = CallScope(
        accesses=admitted.scope.accesses,
        mesh=admitted.scope.mesh,
        namespace=admitted.scope.namespace,
        operation_id=operation_id,
    )
    return _Admitted(subject=admitted.subject, scope=scope, request=admitted.request)


def _code_name(context: Any) -> str:
    """The status a failed call ends with (UNKNOWN when the handler raised without aborting)."""
    try:
        code = context.code()
    except Exception:
        code = None
    if code is None or code == grpc.StatusCode.OK:
        return "CANCELLED" if context.cancelled() else "UNKNOWN"
    return str(code.name)


def _details(context: Any) -> str:
    try:
        return str(context.details() or "")
    except Exception:
        return ""


async def _abort(context: Any, code: Any, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")
