"""Following one operation to its end from the CLI: live events, the outcome, and Ctrl-C.

`apply --wait` and `meshplane wait` share this. Events come from the coordinator's WatchEvents
(resumed after a dropped stream); a coordinator without an event hub is polled instead. Ctrl-C
never leaves the user guessing: the operation keeps running on its adapter, so the CLI says so
and names the commands that wait for or cancel it; a second Ctrl-C within a few seconds offers
to cancel it now (on a terminal; elsewhere the command just ends with 130).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio

from coordinator.client.channel import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNAVAILABLE
from coordinator.client.ctrl_c import on_ctrl_c
from coordinator.client.output import as_dict, print_stream_document
from coordinator.client.progress import ProgressView, colour_enabled
from meshplane.adapter.v1 import adapter_pb2 as apb
from meshplane.coordinator.v1 import coordinator_pb2 as cpb

__all__ = [
    "SECOND_PRESS_SECONDS",
    "TERMINAL",
    "print_failure",
    "print_outcome",
    "state_name",
    "wait_for_operation",
    "watch_events",
]

TERMINAL = frozenset(
    {
        apb.OPERATION_STATE_SUCCEEDED,
        apb.OPERATION_STATE_FAILED,
        apb.OPERATION_STATE_CANCELLED,
        apb.OPERATION_STATE_INTERRUPTED,
    }
)
SECOND_PRESS_SECONDS = 3.0
"""How long after the first Ctrl-C a second one offers to cancel the operation."""
_PROMPT_SECONDS = 30.0
_DOCUMENTS = ("json", "yaml")
_STREAM_RETRIES = 5


def state_name(value: int) -> str:
    """``OPERATION_STATE_RUNNING`` -> ``RUNNING``."""
    return str(apb.OperationState.Name(apb.OperationState.ValueType(value))).removeprefix(
        "OPERATION_STATE_"
    )


async def watch_events(
    stub: Any,
    request: cpb.WatchEventsRequest,
    *,
    idle: float | None,
    on_event: Callable[[cpb.WatchEventsResponse], bool],
) -> None:
    """Follow WatchEvents, resuming from the last cursor after a dropped stream.

    Stops when ``on_event`` returns True, or (with ``idle``) once the stream is quiet that long.
    """
    cursor = request.after_cursor
    failures = 0
    while True:
        resumed = cpb.WatchEventsRequest()
        resumed.CopyFrom(request)
        resumed.after_cursor = cursor
        call = stub.WatchEvents(resumed)
        try:
            while True:
                if idle is None:
                    response = await call.read()
                else:
                    try:
                        response = await asyncio.wait_for(call.read(), idle)
                    except TimeoutError:
                        return
                if response is grpc.aio.EOF:
                    break
                failures = 0
                cursor = response.cursor
                if on_event(response):
                    return
        except grpc.RpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
                raise
            failures += 1
            if failures > _STREAM_RETRIES:
                raise
            await asyncio.sleep(min(5.0, 0.2 * 2**failures))
        finally:
            call.cancel()


def print_failure(operation: apb.Operation) -> None:
    """The error detail a user acts on, on stderr."""
    error = operation.error
    if not error.code:
        failed = [r for r in operation.cluster_results if r.error.code]
        if failed:
            error = failed[0].error
    print(f"operation {operation.operation_id} {state_name(operation.state)}", file=sys.stderr)
    if error.code:
        print(f"  error:        {error.code}: {error.message}", file=sys.stderr)
        if error.probable_cause:
            print(f"  cause:        {error.probable_cause}", file=sys.stderr)
        if error.suggested_remediation:
            print(f"  remediation:  {error.suggested_remediation}", file=sys.stderr)


def print_outcome(operation: apb.Operation) -> None:
    """One line for the operation, one per cluster with its counts."""
    print(f"operation {operation.operation_id} {state_name(operation.state)}")
    for result in operation.cluster_results:
        counts = (
            f"{result.objects_applied} applied, {result.objects_deleted} deleted, "
            f"{result.objects_unchanged} unchanged"
        )
        summary = f" - {result.summary}" if result.summary else ""
        print(f"  cluster {result.cluster}: {state_name(result.state)} ({counts}){summary}")


@dataclass(frozen=True, kw_only=True)
class _Follow:
    stub: Any
    operation_id: str
    call_timeout: float
    output: str
    view: ProgressView


async def _follow_to_end(follow: _Follow) -> None:
    """Print the operation's events until one says it ended (or poll when events are off)."""

    def progress(response: cpb.WatchEventsResponse) -> bool:
        if follow.output in _DOCUMENTS:
            print_stream_document(as_dict(response), follow.output)
        else:
            follow.view.event(response)
        return response.event.operation_state in TERMINAL

    try:
        await watch_events(
            follow.stub,
            cpb.WatchEventsRequest(operation_id=follow.operation_id),
            idle=None,
            on_event=progress,
        )
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise
        # A coordinator without an event hub: no progress to show, only the outcome.
        while True:
            if await _is_final(follow):
                return
            await asyncio.sleep(0.5)


async def _is_final(follow: _Follow) -> bool:
    reply = await follow.stub.GetOperation(
        cpb.GetOperationRequest(operation_id=follow.operation_id), timeout=follow.call_timeout
    )
    return bool(reply.operation.operation.state in TERMINAL)


@contextlib.asynccontextmanager
async def _ctrl_c_presses() -> AsyncIterator[asyncio.Queue[None]]:
    """While inside, each Ctrl-C (SIGINT) puts an item on the queue instead of cancelling."""
    presses: asyncio.Queue[None] = asyncio.Queue()
    with on_ctrl_c(lambda: presses.put_nowait(None)):
        yield presses


async def _tick(view: ProgressView) -> None:
    """Keep the live line's elapsed time moving."""
    while True:
        await asyncio.sleep(0.25)
        view.tick()


async def wait_for_operation(
    stub: Any,
    operation_id: str,
    *,
    call_timeout: float,
    limit: float | None,
    output: str,
    verbose: bool = False,
) -> int:
    """Follow ``operation_id`` to its end and print the outcome; the command's exit code.

    0 when it succeeded, 1 when it failed or was cancelled, 4 when no final state came within
    ``limit`` seconds, 130 after Ctrl-C (see the module docstring). Progress is shown as phase
    lines (`ProgressView`; every event with ``verbose``), or as JSON lines with ``output`` json.
    """
    view = ProgressView(
        out=sys.stdout,
        live=sys.stdout.isatty(),
        verbose=verbose,
        colour=colour_enabled(sys.stdout),
    )
    follow = _Follow(
        stub=stub, operation_id=operation_id, call_timeout=call_timeout, output=output, view=view
    )
    async with _ctrl_c_presses() as presses, asyncio.TaskGroup() as tasks:
        follower = tasks.create_task(_follow_to_end(follow), name=f"follow {operation_id}")
        pressed = tasks.create_task(presses.get(), name="first ctrl-c")
        ticker = tasks.create_task(_tick(view), name="progress ticker") if view.live else None
        done, _ = await asyncio.wait(
            {follower, pressed}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
        )
        if ticker is not None:
            ticker.cancel()
        if follower not in done:
            follower.cancel()
        if pressed not in done:
            pressed.cancel()
        if output not in _DOCUMENTS:
            view.close()
        if pressed in done:
            return await _interrupted(follow, presses)
    if follower not in done:
        print(f"operation {operation_id}: no final state after {limit:g}s", file=sys.stderr)
        print(f"  keep waiting:  meshplane wait {operation_id}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    final = await stub.GetOperation(
        cpb.GetOperationRequest(operation_id=operation_id), timeout=call_timeout
    )
    operation = final.operation.operation
    if output in _DOCUMENTS:
        print_stream_document(as_dict(final), output)
    elif operation.state == apb.OPERATION_STATE_SUCCEEDED:
        print_outcome(operation)
    if operation.state == apb.OPERATION_STATE_SUCCEEDED:
        return 0
    print_failure(operation)
    return EXIT_FAILED


async def _interrupted(follow: _Follow, presses: asyncio.Queue[None]) -> int:
    """After the first Ctrl-C: say what goes on, and offer to cancel on a second one."""
    operation_id = follow.operation_id
    print(
        f"\ninterrupted: operation {operation_id} keeps running on its adapter\n"
        f"  wait for it:  meshplane wait {operation_id}\n"
        f"  cancel it:    meshplane cancel {operation_id}",
        file=sys.stderr,
        flush=True,
    )
    if not sys.stdin.isatty():
        return EXIT_INTERRUPTED
    print(
        f"press Ctrl-C again within {SECOND_PRESS_SECONDS:g}s to cancel it now",
        file=sys.stderr,
        flush=True,
    )
    try:
        await asyncio.wait_for(presses.get(), SECOND_PRESS_SECONDS)
    except TimeoutError:
        return EXIT_INTERRUPTED
    answer = await _ask(f"cancel operation {operation_id}? [y/N] ", presses)
    if answer not in ("y", "yes"):
        print("not cancelled; the operation keeps running", file=sys.stderr)
        return EXIT_INTERRUPTED
    reply = await follow.stub.CancelOperation(
        cpb.CancelOperationRequest(operation_id=operation_id), timeout=follow.call_timeout
    )
    state = state_name(reply.operation.operation.state)
    print(f"cancellation requested: operation {operation_id} {state}", file=sys.stderr)
    return EXIT_INTERRUPTED


async def _ask(question: str, presses: asyncio.Queue[None]) -> str:
    """One line from the terminal, lower-cased; "" on Ctrl-C, end of input or no answer."""
    print(question, end="", file=sys.stderr, flush=True)
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()
    received = bytearray()
    fd = sys.stdin.fileno()

    def readable() -> None:
        chunk = os.read(fd, 256)
        received.extend(chunk)
        if (not chunk or b"\n" in received) and not line.done():
            line.set_result(received.split(b"\n", 1)[0].decode(errors="replace"))

    loop.add_reader(fd, readable)
    try:
        async with asyncio.TaskGroup() as tasks:
            pressed = tasks.create_task(presses.get(), name="ctrl-c at prompt")
            waited: set[asyncio.Future[Any]] = {line, pressed}
            done, _ = await asyncio.wait(
                waited, timeout=_PROMPT_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            pressed.cancel()
    finally:
        loop.remove_reader(fd)
    if line not in done:
        print(file=sys.stderr)
        return ""
    return line.result().strip().lower()
