"""The conformance checks: each an async function of the suite context.

A check returns the message of its passing row (or, for `install-delete`, one row per catalogue
entry) and raises `CheckFailed` or `CheckSkipped` otherwise. Names are stable: they are the rows
of `meshplane conformance` and the values `--only` accepts. Each check states the contract rule
it proves, quoting `protos/meshplane/adapter/v1/adapter.proto` where it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
import structlog
import yaml

from adapters.conformance.cluster_view import (
    MESH_LABEL,
    RELEASE_LABEL,
    ClusterViewError,
    ManagedObject,
)
from adapters.conformance.operation_calls import TERMINAL_STATES, USERNAME, state_name
from adapters.conformance.suite_context import SuiteContext
from adapters.conformance.verdicts import (
    CheckFailed,
    CheckResult,
    CheckSkipped,
    Outcome,
    require,
)
from meshplane.adapter.v1 import adapter_pb2 as pb

__all__ = ["CHECKS", "CHECK_NAMES", "Check", "CheckFunction"]

_log = structlog.get_logger(__name__)

CheckFunction = Callable[[SuiteContext], Awaitable[str | list[CheckResult]]]

MESH_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
BAD_NAMESPACE = "Bad_Namespace!"
CONTRACT_VERSION = "v1"
_LISTED = 5


@dataclass(frozen=True, kw_only=True)
class Check:
    """One named check and the rule it proves."""

    name: str
    proves: str
    run: CheckFunction


def _listed(items: Iterable[object]) -> str:
    """The first few items, then how many more."""
    shown = [str(item) for item in items]
    more = len(shown) - _LISTED
    return ", ".join(shown[:_LISTED]) + (f" and {more} more" if more > 0 else "")


def _rpc_text(exc: grpc.aio.AioRpcError) -> str:
    return f"{exc.code().name}: {exc.details()}"


# -- identity and catalogue -----------------------------------------------------------------


async def get_info(ctx: SuiteContext) -> str:
    """GetInfo identifies the adapter: lower-case mesh, versions, contract v1, event stream."""
    info = await ctx.info()
    problems = []
    if not MESH_NAME.fullmatch(info.mesh):
        problems.append(f"mesh {info.mesh!r} is not a non-empty lower-case name")
    if not info.adapter_version:
        problems.append("adapter_version is empty")
    if not info.git_sha:
        problems.append('git_sha is empty ("unknown" when not built from a checkout)')
    if info.contract_version != CONTRACT_VERSION:
        problems.append(f"contract_version is {info.contract_version!r}, not {CONTRACT_VERSION!r}")
    if not info.event_stream_id:
        problems.append("event_stream_id is empty")
    if info.default_namespace and not DNS1123_LABEL.fullmatch(info.default_namespace):
        problems.append(f"default_namespace {info.default_namespace!r} is not a DNS-1123 label")
    require(not problems, "; ".join(problems))
    return (
        f"{info.mesh} adapter {info.adapter_version} ({info.git_sha[:12]}), contract "
        f"{info.contract_version}, event stream {info.event_stream_id}"
    )


def _descriptor_problems(op: pb.OperationDescriptor) -> list[str]:
    label = op.id or "<no id>"
    problems = []
    if not op.id:
        problems.append("an entry has no id")
    if not op.description.strip():
        problems.append(f"{label}: no description")
    if op.category == pb.OPERATION_CATEGORY_UNSPECIFIED:
        problems.append(f"{label}: category is UNSPECIFIED")
    if op.default_namespace and not DNS1123_LABEL.fullmatch(op.default_namespace):
        problems.append(f"{label}: default_namespace {op.default_namespace!r} is not DNS-1123")
    names = [p.name for p in op.parameters]
    if any(not name for name in names):
        problems.append(f"{label}: a parameter has no name")
    if len(set(names)) != len(names):
        problems.append(f"{label}: parameter names repeat ({', '.join(names)})")
    for parameter in op.parameters:
        allowed = list(parameter.allowed_values)
        if parameter.default_value and allowed and parameter.default_value not in allowed:
            problems.append(
                f"{label}: parameter {parameter.name} defaults to {parameter.default_value!r}, "
                f"which is not among its allowed values {allowed}"
            )
    return problems


async def catalogue(ctx: SuiteContext) -> str:
    """Every catalogue entry has an id, a description and a category; parameters are sane."""
    ops = await ctx.catalogue()
    require(bool(ops), "ListOperations returned no operations")
    problems = [problem for op in ops for problem in _descriptor_problems(op)]
    ids = [op.id for op in ops]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        problems.append(f"ids repeat: {', '.join(repeated)}")
    require(not problems, "; ".join(problems))
    categories = sorted({str(pb.OperationCategory.Name(op.category)) for op in ops})
    short = [c.removeprefix("OPERATION_CATEGORY_").lower() for c in categories]
    return f"{len(ops)} operations ({_listed(ids)}); categories: {', '.join(short)}"


async def mesh_versions(ctx: SuiteContext) -> str:
    """ListMeshVersions is non-empty and its default_version is one of the versions."""
    reply = await ctx.stub.ListMeshVersions(
        pb.ListMeshVersionsRequest(), timeout=ctx.config.rpc_timeout
    )
    versions = [v.version for v in reply.versions]
    require(bool(versions), "ListMeshVersions returned no versions")
    require(all(versions), "a listed version is empty")
    require(len(set(versions)) == len(versions), f"versions repeat: {versions}")
    require(
        reply.default_version in versions,
        f"default_version {reply.default_version!r} is not among the versions {versions}",
    )
    default = next(v for v in reply.versions if v.version == reply.default_version)
    require(
        not default.prerelease or all(v.prerelease for v in reply.versions),
        f"default_version {default.version} is a pre-release although stable versions exist",
    )
    noun = "version" if len(versions) == 1 else "versions"
    return f"{len(versions)} {noun} ({_listed(versions)}); default {reply.default_version}"


# -- request validation ---------------------------------------------------------------------


async def unknown_operation(ctx: SuiteContext) -> str:
    """An operation that is not in the catalogue is rejected with NOT_FOUND."""
    name = f"conformance-no-such-operation-{ctx.run_id}"
    try:
        await ctx.stub.ApplyOperation(
            pb.ApplyOperationRequest(
                operation_id=ctx.new_id("unknown"), operation=name, username=USERNAME
            ),
            timeout=ctx.config.rpc_timeout,
        )
    except grpc.aio.AioRpcError as exc:
        require(
            exc.code() == grpc.StatusCode.NOT_FOUND, f"expected NOT_FOUND, got {_rpc_text(exc)}"
        )
        return f"NOT_FOUND: {exc.details()}"
    raise CheckFailed(f"ApplyOperation accepted {name!r}, which is not in the catalogue")


def _harmless(ops: Sequence[pb.OperationDescriptor]) -> pb.OperationDescriptor:
    """An entry to send invalid requests for: validate first (it changes nothing)."""
    preference = (
        pb.OPERATION_CATEGORY_VALIDATE,
        pb.OPERATION_CATEGORY_SAMPLE_APPLICATION,
        pb.OPERATION_CATEGORY_CONFIGURE,
        pb.OPERATION_CATEGORY_INSTALL,
    )
    for category in preference:
        for op in ops:
            if op.category == category:
                return op
    raise CheckSkipped("the catalogue has no operation that takes a namespace")


async def bad_namespace(ctx: SuiteContext) -> str:
    """A namespace that is not a DNS-1123 label is INVALID_ARGUMENT, naming the field."""
    op = _harmless(await ctx.catalogue())
    request = ctx.request(op, operation_id=ctx.new_id("bad-namespace"), namespace=BAD_NAMESPACE)
    try:
        accepted = await ctx.stub.ApplyOperation(request, timeout=ctx.config.rpc_timeout)
    except grpc.aio.AioRpcError as exc:
        require(
            exc.code() == grpc.StatusCode.INVALID_ARGUMENT,
            f"expected INVALID_ARGUMENT, got {_rpc_text(exc)}",
        )
        require(
            "namespace" in (exc.details() or "").lower(),
            f"the message does not name the namespace field: {exc.details()!r}",
        )
        return f"{op.id}: INVALID_ARGUMENT: {exc.details()}"
    with contextlib.suppress(grpc.aio.AioRpcError):  # the failure below is what matters
        await ctx.stub.CancelOperation(
            pb.CancelOperationRequest(operation_id=accepted.operation_id),
            timeout=ctx.config.rpc_timeout,
        )
    raise CheckFailed(f"ApplyOperation {op.id} accepted namespace {BAD_NAMESPACE!r}")


# -- operations -----------------------------------------------------------------------------


async def apply_returns_promptly(ctx: SuiteContext) -> str:
    """ApplyOperation records the operation and returns at once, with its id."""
    request, response, seconds = await ctx.start_install()
    bound = ctx.config.prompt_seconds
    require(bool(response.operation_id), "the response has no operation_id")
    require(
        response.operation_id == request.operation_id,
        f"operation_id {response.operation_id!r} is not the requested {request.operation_id!r}",
    )
    require(response.created, "created is false for an operation_id never sent before")
    require(response.HasField("operation"), "the response carries no operation snapshot")
    require(
        response.operation.operation == request.operation,
        f"the snapshot is of {response.operation.operation!r}, not {request.operation!r}",
    )
    require(
        seconds <= bound,
        f"{request.operation} took {seconds:.2f}s to answer (bound {bound:g}s): the work must "
        "run in the background",
    )
    return (
        f"{request.operation} answered in {seconds * 1000:.0f} ms with "
        f"{state_name(response.operation.state)} operation {response.operation_id}"
    )


def _entries_into(events: Sequence[pb.Event], states: frozenset[int]) -> int:
    """How often the operation entered one of ``states`` (UNSPECIFIED events ignored)."""
    count = 0
    inside = False
    for event in events:
        state = event.operation_state
        if state == pb.OPERATION_STATE_UNSPECIFIED:
            continue
        if state in states and not inside:
            count += 1
        inside = state in states
    return count


async def idempotent_operation_id(ctx: SuiteContext) -> str:
    """The same operation_id again returns the same operation and starts no second run."""
    request, first, _ = await ctx.start_install()
    snapshots: list[str] = []
    for moment in ("while it runs", "once it has finished"):
        if snapshots:
            await ctx.wait(first.operation_id)
        again, _ = await ctx.apply(request)
        require(not again.created, f"created is true when the operation_id was re-sent {moment}")
        require(
            again.operation_id == first.operation_id,
            f"re-sent {moment}, the response names {again.operation_id!r}",
        )
        if first.operation.attempt:
            require(
                again.operation.attempt == first.operation.attempt,
                f"re-sent {moment}, attempt went from {first.operation.attempt} to "
                f"{again.operation.attempt}: a second run was started",
            )
        snapshots.append(state_name(again.operation.state))
    done = await ctx.wait(first.operation_id)
    require(
        done.state in TERMINAL_STATES and snapshots[-1] == state_name(done.state),
        f"re-sent after it finished {state_name(done.state)}, the snapshot says {snapshots[-1]}",
    )
    events = await ctx.replay(operation_id=first.operation_id)
    require(bool(events), f"StreamEvents has no events for {first.operation_id}")
    starts = _entries_into(events, frozenset({pb.OPERATION_STATE_RUNNING}))
    ends = _entries_into(events, TERMINAL_STATES)
    require(starts == 1, f"the operation's events show {starts} starts (RUNNING), not 1")
    require(ends == 1, f"the operation's events show {ends} terminal states, not 1")
    return (
        f"{request.operation} re-sent {snapshots[0]} and {snapshots[1]}: same operation, "
        f"created=false, one start and one end in its {len(events)} events"
    )


def _first_disorder(sequences: Sequence[int]) -> int | None:
    for index in range(1, len(sequences)):
        if sequences[index] <= sequences[index - 1]:
            return index
    return None


async def event_sequence(ctx: SuiteContext) -> str:
    """Sequences strictly increase; a reconnect after N replays exactly the events after N."""
    _, install, _ = await ctx.start_install()
    await ctx.wait(install.operation_id)
    info = await ctx.info()
    replayed = await ctx.replay()
    require(len(replayed) >= 2, f"StreamEvents replayed {len(replayed)} events after the install")
    sequences = [e.sequence for e in replayed]
    disorder = _first_disorder(sequences)
    require(
        disorder is None,
        f"replayed sequences do not strictly increase at index {disorder}: "
        f"{sequences[max(0, (disorder or 1) - 2) :][:4]}",
    )
    foreign = {e.event_stream_id for e in replayed} - {info.event_stream_id}
    require(not foreign, f"events name stream {_listed(foreign)}, not {info.event_stream_id}")
    pivot = replayed[len(replayed) // 2 - 1].sequence
    resumed = await ctx.replay(after_sequence=pivot)
    expected = [e for e in replayed if e.sequence > pivot]
    got = resumed[: len(expected)]
    require(
        [e.sequence for e in got] == [e.sequence for e in expected],
        f"after_sequence={pivot} replayed {_listed(e.sequence for e in got)}, expected "
        f"{_listed(e.sequence for e in expected)}",
    )
    require(got == expected, f"after_sequence={pivot} replayed different event contents")
    later = [e.sequence for e in resumed[len(expected) :]]
    require(
        all(s > sequences[-1] for s in later) and _first_disorder(later) is None,
        f"after_sequence={pivot} replayed unexpected extra sequences {later}",
    )
    live_note = await _live_follow(ctx, sequences)
    return (
        f"{len(replayed)} events ({sequences[0]}..{sequences[-1]}) strictly increasing; "
        f"reconnect after {pivot} replayed exactly the {len(expected)} later ones; {live_note}"
    )


async def _live_follow(ctx: SuiteContext, replayed: Sequence[int]) -> str:
    """The stream followed live since the install saw the same sequences, in order."""
    deadline = time.monotonic() + 10 * ctx.config.idle_seconds
    live = ctx.follower.events
    while (not live or live[-1].sequence < replayed[-1]) and time.monotonic() < deadline:
        require(not ctx.follower.error, f"the live stream ended: {ctx.follower.error}")
        await asyncio.sleep(ctx.config.idle_seconds / 5)
    sequences = [e.sequence for e in live]
    require(bool(sequences), "the live StreamEvents received nothing during the install")
    disorder = _first_disorder(sequences)
    require(disorder is None, f"live sequences do not strictly increase at index {disorder}")
    window = [s for s in replayed if sequences[0] <= s <= sequences[-1]]
    missing = sorted(set(window) - set(sequences))
    require(not missing, f"the live stream skipped sequences {_listed(missing)}")
    return f"{len(sequences)} followed live in order"


# -- install and delete every operation -----------------------------------------------------


def _custom_body(ctx: SuiteContext, namespace: str) -> tuple[str, str]:
    """A tiny ConfigMap for the custom operation; returns (name, YAML)."""
    name = f"meshplane-conformance-{ctx.run_id}"
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"written-by": "meshplane conformance", "run": ctx.run_id},
    }
    return name, yaml.safe_dump(body, sort_keys=False)


def _ours(
    objects: dict[ManagedObject, dict[str, str]], added: set[ManagedObject], mesh: str
) -> list[ManagedObject]:
    """Objects the operation added, or that carry a release label one of those carries.

    Another mesh may be installed in the same cluster, with the same managed-by label and even
    the same operation ids: an object labelled with another mesh (`meshplane.io/mesh`) is never
    this adapter's. Release names are learned from what the operation added, not guessed.
    """

    def this_mesh(labels: dict[str, str]) -> bool:
        return labels.get(MESH_LABEL, mesh) == mesh

    releases = {
        objects[k][RELEASE_LABEL]
        for k in added
        if k in objects and RELEASE_LABEL in objects[k] and this_mesh(objects[k])
    }
    return sorted(
        k
        for k, labels in objects.items()
        if this_mesh(labels) and (k in added or labels.get(RELEASE_LABEL) in releases)
    )


def _kinds(objects: Iterable[ManagedObject]) -> str:
    counts: dict[str, int] = {}
    for obj in objects:
        counts[obj.kind] = counts.get(obj.kind, 0) + 1
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))


async def _validate_once(ctx: SuiteContext, op: pb.OperationDescriptor) -> str:
    before = await ctx.snapshot()
    await ctx.run_to_end(ctx.request(op, operation_id=ctx.new_id(op.id)), undo=False)
    after = await ctx.snapshot()
    changed = sorted(set(before) ^ set(after))
    require(not changed, f"a VALIDATE operation changed the cluster: {_listed(changed)}")
    return "ran to SUCCEEDED and changed nothing (validate operations are not deleted)"


async def _custom_once(ctx: SuiteContext, op: pb.OperationDescriptor) -> str:
    namespace = op.default_namespace or (await ctx.info()).default_namespace or "default"
    name, body = _custom_body(ctx, namespace)
    before = await ctx.snapshot()
    request = ctx.request(op, operation_id=ctx.new_id(op.id), custom_body=body)
    await ctx.run_to_end(request)
    require(
        await ctx.view.config_map_exists(namespace, name),
        f"custom SUCCEEDED but ConfigMap {namespace}/{name} from its body is not in the cluster",
    )
    added = set(await ctx.snapshot()) - set(before)
    undo = ctx.request(
        op, operation_id=ctx.new_id(f"{op.id}-delete"), custom_body=body, delete=True
    )
    await ctx.run_to_end(undo)
    require(
        not await ctx.view.config_map_exists(namespace, name),
        f"ConfigMap {namespace}/{name} is still there after the delete",
    )
    left = sorted(set(await ctx.snapshot()) & added)
    require(not left, f"left behind after delete: {_listed(left)}")
    return f"applied ConfigMap {namespace}/{name} from custom_body; delete removed it"


async def _install_and_delete_once(ctx: SuiteContext, op: pb.OperationDescriptor) -> str:
    mesh = (await ctx.info()).mesh
    before = await ctx.snapshot()
    await ctx.run_to_end(ctx.request(op, operation_id=ctx.new_id(op.id)))
    after = await ctx.snapshot()
    added = _ours(after, set(after) - set(before), mesh)
    undo = ctx.request(op, operation_id=ctx.new_id(f"{op.id}-delete"), delete=True)
    await ctx.run_to_end(undo)
    left = _ours(await ctx.snapshot(), set(added), mesh)
    require(not left, f"left behind after delete: {_listed(left)}")
    if not added:
        return "applied no labelled objects; delete SUCCEEDED"
    return f"applied {_kinds(added)}; delete removed them all"


async def _exercise(ctx: SuiteContext, op: pb.OperationDescriptor) -> str:
    if op.category == pb.OPERATION_CATEGORY_VALIDATE:
        return await _validate_once(ctx, op)
    if not op.supports_delete:
        raise CheckSkipped("supports_delete is false, so the suite does not install it")
    unsettable = [
        p.name for p in op.parameters if p.required and not p.default_value and not p.allowed_values
    ]
    if unsettable:
        raise CheckSkipped(f"required parameters without a default: {', '.join(unsettable)}")
    if op.category == pb.OPERATION_CATEGORY_CUSTOM:
        return await _custom_once(ctx, op)
    return await _install_and_delete_once(ctx, op)


async def _row(check: str, subject: str, work: Callable[[], Awaitable[str]]) -> CheckResult:
    started = time.monotonic()
    try:
        message = await work()
        outcome = Outcome.PASS
    except CheckSkipped as exc:
        message, outcome = str(exc), Outcome.SKIP
    except CheckFailed as exc:
        message, outcome = str(exc), Outcome.FAIL
    except grpc.aio.AioRpcError as exc:
        message, outcome = _rpc_text(exc), Outcome.FAIL
    except ClusterViewError as exc:
        message, outcome = f"cannot read the cluster: {exc}", Outcome.FAIL
    except Exception as exc:
        _log.exception("conformance.check_crashed", check=check, subject=subject)
        message, outcome = f"the check itself crashed ({type(exc).__name__}: {exc})", Outcome.FAIL
    return CheckResult(
        check=check,
        subject=subject,
        outcome=outcome,
        message=message,
        seconds=time.monotonic() - started,
    )


async def install_delete(ctx: SuiteContext) -> list[CheckResult]:
    """Every operation with supports_delete installs and deletes cleanly, the mesh first and
    last; validate operations run; custom applies and deletes a body the suite writes."""
    name = "install-delete"
    install = await ctx.install_descriptor()
    mesh = (await ctx.info()).mesh
    added: list[ManagedObject] = []

    async def install_mesh() -> str:
        await ctx.installed()
        after = await ctx.snapshot()
        added.extend(_ours(after, set(after) - set(ctx.baseline()), mesh))
        require(
            bool(added),
            f"{install.id} SUCCEEDED but nothing labelled managed-by=meshplane appeared in "
            f"{ctx.view.server}: does the adapter manage the cluster this kubeconfig names?",
        )
        return f"installed {_kinds(added)}"

    installed = await _row(name, install.id, install_mesh)
    if installed.outcome is not Outcome.PASS:
        rows = [installed]
        for op in await ctx.catalogue():
            if op.id != install.id:
                rows.append(
                    CheckResult(
                        check=name,
                        subject=op.id,
                        outcome=Outcome.SKIP,
                        message=f"the mesh {install.id} did not succeed",
                    )
                )
        return rows
    rows = []
    for op in await ctx.catalogue():
        if op.id != install.id:
            rows.append(await _row(name, op.id, functools.partial(_exercise, ctx, op)))

    async def uninstall_mesh() -> str:
        await ctx.uninstall()
        left = _ours(await ctx.snapshot(), set(added), mesh)
        require(not left, f"left behind after delete: {_listed(left)}")
        return f"{installed.message}; delete (run last) removed them all"

    uninstalled = await _row(name, install.id, uninstall_mesh)
    first = CheckResult(
        check=name,
        subject=install.id,
        outcome=uninstalled.outcome,
        message=uninstalled.message,
        seconds=installed.seconds + uninstalled.seconds,
    )
    return [first, *rows]


# -- every operation ends -------------------------------------------------------------------


async def operation_terminal(ctx: SuiteContext) -> str:
    """Every operation the suite started reaches a terminal state within its bound."""
    if not ctx.runs:
        await ctx.start_install()
    problems = []
    for run in list(ctx.runs):
        try:
            done = await ctx.wait(run.operation_id)
        except CheckFailed as exc:
            problems.append(str(exc))
            continue
        if not done.HasField("end_time"):
            problems.append(f"{run.label} is {state_name(done.state)} but has no end_time")
        if done.state == pb.OPERATION_STATE_FAILED and not (done.error.code and done.error.message):
            problems.append(f"{run.label} FAILED without an error code and message")
    require(not problems, "; ".join(problems))
    slowest = max(ctx.runs, key=lambda r: r.waited_seconds)
    return (
        f"{len(ctx.runs)} operations reached a terminal state (slowest: {slowest.label}, "
        f"{slowest.waited_seconds:.1f}s of {slowest.bound:g}s)"
    )


CHECKS: tuple[Check, ...] = (
    Check(name="get-info", proves="GetInfo identifies the adapter", run=get_info),
    Check(name="catalogue", proves="every catalogue entry is complete", run=catalogue),
    Check(name="mesh-versions", proves="installable versions are listed", run=mesh_versions),
    Check(name="unknown-operation", proves="unknown ids are NOT_FOUND", run=unknown_operation),
    Check(name="bad-namespace", proves="bad namespaces are INVALID_ARGUMENT", run=bad_namespace),
    Check(
        name="apply-returns-promptly",
        proves="ApplyOperation returns at once",
        run=apply_returns_promptly,
    ),
    Check(
        name="idempotent-operation-id",
        proves="the same operation_id is the same operation",
        run=idempotent_operation_id,
    ),
    Check(name="event-sequence", proves="events are ordered and replayable", run=event_sequence),
    Check(
        name="install-delete",
        proves="every operation installs and deletes cleanly",
        run=install_delete,
    ),
    Check(
        name="operation-terminal",
        proves="operations reach a terminal state",
        run=operation_terminal,
    ),
)
CHECK_NAMES: tuple[str, ...] = tuple(check.name for check in CHECKS)
