"""Waiting for applied objects to become ready (by `readiness` rules), or to be gone.

Every component is polled in parallel, the delay growing from a few milliseconds to the policy's
poll interval. A component that is *stuck* (it cannot create its Pods) for
`WaitPolicy.stuck_seconds` fails at once instead of running out the timeout; one that does not
become ready is explained by its pods' state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from adapters.kit.apply.kube_errors import ApplyError, not_ready_detail
from adapters.kit.apply.readiness import (
    POD_OWNING_KINDS,
    Readiness,
    pod_selector,
    readiness_of,
    reason_from_pods,
)
from adapters.kit.model.objects import KubeObject, ObjectRef
from adapters.kit.model.plans import Progress, ProgressKind, ProgressSink, WaitPolicy
from adapters.kit.model.records import ErrorDetail

__all__ = ["ObjectSource", "WaitResult", "wait_gone", "wait_ready"]

log = structlog.get_logger(__name__)

_FIRST_POLL_DELAY = 0.02
_POLL_GROWTH = 1.3


class ObjectSource(Protocol):
    """What waiting needs from a cluster session."""

    async def get_ref(self, ref: ObjectRef) -> KubeObject | None:
        """The object, or None when it is gone."""
        ...

    async def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str = "",
    ) -> list[KubeObject]:
        """Objects of a kind."""
        ...


@dataclass(frozen=True, kw_only=True)
class WaitResult:
    """What waiting found: components that became ready and those that did not."""

    ready: tuple[ObjectRef, ...] = ()
    failed: tuple[tuple[ObjectRef, Readiness], ...] = ()
    timed_out: bool = False
    timeout: float = 0.0

    def error(self) -> ErrorDetail | None:
        """The first failure as an ErrorDetail (None when everything became ready)."""
        if not self.failed:
            return None
        ref, readiness = self.failed[0]
        return not_ready_detail(
            ref,
            reason=readiness.reason,
            message=readiness.message,
            timeout=None if readiness.failed else self.timeout,
        )

    def raise_for_failure(self) -> None:
        """Raise ApplyError when any component failed."""
        detail = self.error()
        if detail is not None:
            raise ApplyError(detail)


async def _explain(source: ObjectSource, ref: ObjectRef, last: Readiness) -> Readiness:
    """For a workload that did not become ready, look at its pods for the real reason."""
    if ref.kind not in POD_OWNING_KINDS or last.stuck:
        return last  # a workload that cannot create Pods: its own condition is the cause
    obj = await source.get_ref(ref)
    if obj is None:
        return Readiness(ready=False, reason="NotFound", message=f"{ref} was deleted")
    selector = pod_selector(obj)
    if not selector:
        return last
    pods = await source.list("v1", "Pod", ref.namespace, selector)
    found = reason_from_pods(pods)
    if found is None:
        return last
    return Readiness(ready=False, failed=last.failed, reason=found[0], message=found[1])


@dataclass(kw_only=True)
class _Watch:
    """One component being waited for: what it looked like last, since when it is stuck."""

    ref: ObjectRef
    first: KubeObject | None
    """The server's answer to the write, read as the first look instead of asking again."""
    announced: str = ""
    stuck_since: float | None = None

    def stuck_too_long(self, state: Readiness, policy: WaitPolicy) -> bool:
        """Whether ``state`` has been stuck for the policy's ``stuck_seconds`` now."""
        if not state.stuck:
            self.stuck_since = None
            return False
        now = time.monotonic()
        self.stuck_since = now if self.stuck_since is None else self.stuck_since
        return now - self.stuck_since >= policy.stuck_seconds

    def waiting_news(self, state: Readiness) -> Progress | None:
        """WAITING at the first look, and again when the component turns out to be stuck."""
        if self.announced and not (state.stuck and self.announced != state.reason):
            return None
        self.announced = state.reason or "waiting"
        return Progress(
            kind=ProgressKind.WAITING,
            ref=self.ref,
            reason=state.reason,
            message=f"waiting for {self.ref}: {state.message or state.reason}",
        )


@dataclass(kw_only=True)
class _Wait:
    """One wait for a set of components: their last states, which became ready, which failed
    for good (``hard``), all against one deadline."""

    source: ObjectSource
    policy: WaitPolicy
    sink: ProgressSink
    rule: Callable[[KubeObject], Readiness]
    deadline: float
    last: dict[ObjectRef, Readiness] = field(default_factory=dict)
    ready: list[ObjectRef] = field(default_factory=list)
    hard: list[ObjectRef] = field(default_factory=list)

    async def look(self, watch: _Watch) -> Readiness:
        first, watch.first = watch.first, None
        obj = first if first is not None else await self.source.get_ref(watch.ref)
        if obj is None:
            return Readiness(ready=False, reason="NotFound", message=f"{watch.ref} does not exist")
        return self.rule(obj)

    async def follow(self, watch: _Watch) -> None:
        """Poll one component until it is ready, fails for good, or the deadline passes."""
        ref, delay = watch.ref, _FIRST_POLL_DELAY
        while True:
            state = self.last[ref] = await self.look(watch)
            if state.ready:
                self.ready.append(ref)
                self.sink(Progress(kind=ProgressKind.READY, ref=ref, message=f"{ref} is ready"))
                return
            if watch.stuck_too_long(state, self.policy):
                self.last[ref] = dataclasses.replace(state, failed=True)
                self.hard.append(ref)
                return
            news = watch.waiting_news(state)
            if news is not None:
                self.sink(news)
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * _POLL_GROWTH, self.policy.poll_interval_seconds)

    async def failures(
        self, refs: Sequence[ObjectRef], budget: float
    ) -> list[tuple[ObjectRef, Readiness]]:
        """The components not ready, explained and reported FAILED; hard failures first: they
        are the cause, the rest merely ran out of time."""
        not_ready = [ref for ref in refs if ref not in self.ready]
        found: list[tuple[ObjectRef, Readiness]] = []
        for ref in sorted(not_ready, key=lambda r: r not in self.hard):
            state = await _explain(self.source, ref, self.last[ref])
            found.append((ref, state))
            self.sink(
                Progress(
                    kind=ProgressKind.FAILED,
                    ref=ref,
                    reason=state.reason,
                    message=state.message or f"{ref} did not become ready in {budget:g}s",
                )
            )
        if found:
            log.info(
                "components not ready",
                failed=[str(ref) for ref, _ in found],
                reasons=[state.reason for _, state in found],
            )
        return found


async def wait_ready(
    source: ObjectSource,
    refs: Sequence[ObjectRef],
    policy: WaitPolicy,
    sink: ProgressSink,
    *,
    within_seconds: float | None = None,
    rule: Callable[[KubeObject], Readiness] = readiness_of,
    observed: Mapping[str, KubeObject] | None = None,
) -> WaitResult:
    """Poll every ref in parallel until ready, failed, or the policy's timeout.

    Emits WAITING once for each component not ready at first look, READY for each as it becomes
    ready (in the order they do) and FAILED, with the reason the cluster reports, for each that
    failed or was still not ready at the deadline.
    ``within_seconds`` overrides the policy's timeout (the operation's remaining budget);
    ``rule`` replaces the readiness table (hooks wait with `hook_completion`). ``observed``
    (by ref key) holds objects as the server just answered a write: the first look at those
    reads them instead of asking again (a CRD is usually Established in its apply answer).
    """
    budget = policy.timeout_seconds if within_seconds is None else within_seconds
    if not refs:
        return WaitResult(timeout=budget)
    wait = _Wait(
        source=source,
        policy=policy,
        sink=sink,
        rule=rule,
        deadline=time.monotonic() + budget,
        last={ref: Readiness(ready=False, reason="NotChecked") for ref in refs},
    )
    seen = observed or {}
    timed_out = False
    try:
        async with asyncio.timeout(budget + 0.5), asyncio.TaskGroup() as group:
            for ref in refs:
                watch = _Watch(ref=ref, first=seen.get(ref.key))
                group.create_task(wait.follow(watch), name=f"wait-ready {ref.key}")
    except TimeoutError:
        timed_out = True
    timed_out = timed_out or any(r not in wait.ready and r not in wait.hard for r in refs)
    failures = await wait.failures(refs, budget)
    return WaitResult(
        ready=tuple(wait.ready), failed=tuple(failures), timed_out=timed_out, timeout=budget
    )


async def wait_gone(
    source: ObjectSource, refs: Sequence[ObjectRef], *, within_seconds: float, poll: float = 0.5
) -> list[ObjectRef]:
    """Wait until every ref is deleted (finalizers done); return those still present."""
    deadline = time.monotonic() + within_seconds
    remaining = list(refs)
    delay = _FIRST_POLL_DELAY
    while remaining:
        present = await asyncio.gather(*(source.get_ref(ref) for ref in remaining))
        remaining = [ref for ref, obj in zip(remaining, present, strict=True) if obj is not None]
        left = deadline - time.monotonic()
        if not remaining or left <= 0:
            break
        await asyncio.sleep(min(delay, left))
        delay = min(delay * _POLL_GROWTH, poll)
    return remaining
