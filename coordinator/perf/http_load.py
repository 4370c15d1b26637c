"""A minimal keep-alive HTTP/1.1 client on asyncio protocols: one request in flight per connection.

It does only what a load generator needs — send a pre-built request, find where the response
ends (Content-Length, chunked, or connection close), report the status — so it stays fast enough
to compete with `wrk` from a single Python thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from coordinator.perf.recording import Tally
from coordinator.perf.scheduling import Schedule
from coordinator.perf.transports import TransportError
from serving.input_quoting import quoted

_NO_BODY_STATUS = frozenset({204, 304})
_monotonic = time.monotonic


def _ignore_response(code: str, latency_s: float, failed: bool, done: float) -> None:
    """Recorder before a closed loop binds the run's tally (the fast path only runs inside one)."""


def _no_index() -> int | None:
    """Schedule before a closed loop binds the run's: nothing more to send."""
    return None


def _discard(data: bytes) -> None:
    """Writer before the first connect binds the socket's."""


@dataclass(frozen=True, kw_only=True)
class HttpTarget:
    """Where to connect and the exact bytes of the request to send each time."""

    host: str
    port: int
    request: bytes
    head: bool


def build_target(
    url: str,
    *,
    method: str = "",
    headers: Mapping[str, str] | None = None,
    cookies: Mapping[str, str] | None = None,
    body: str = "",
    content_type: str = "",
) -> HttpTarget:
    """Parse an http:// URL and render the request once (it is the same for every send)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(
            f"the built-in HTTP generator speaks plain http:// only, got {quoted(url)}"
        )
    if not parts.hostname:
        raise ValueError(f"no host in {quoted(url)}")
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    for name, value in [*(headers or {}).items(), *(cookies or {}).items()]:
        if any(char in name + value for char in "\r\n\0"):
            raise ValueError(f"header or cookie {quoted(name)} contains a line break or NUL")
    verb = (method or ("POST" if body else "GET")).upper()
    host_header = parts.netloc.rsplit("@", 1)[-1]
    lines = [f"{verb} {path} HTTP/1.1", f"Host: {host_header}"]
    given = {name.lower() for name in (headers or {})}
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    if cookies:
        lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
    payload = body.encode()
    if payload or verb in {"POST", "PUT", "PATCH"}:
        if "content-type" not in given and content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(payload)}")
    if "user-agent" not in given:
        lines.append("User-Agent: meshplane-perf")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload
    return HttpTarget(host=parts.hostname, port=port, request=request, head=verb == "HEAD")


class _Socket(asyncio.Protocol):
    """The protocol of one socket; forwards to its connection only while it is the current one.

    A connection outlives its sockets (it reconnects), so a late `connection_lost` from an old
    socket must not fail the request running on the new one.
    """

    def __init__(self, owner: HttpConnection) -> None:
        self._owner = owner
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember which socket this is."""
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Forward bytes (a closed or aborted socket is no longer read, so they are current)."""
        self._owner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forward the loss of the current socket only."""
        if self._owner._transport is self._transport:
            self._owner.connection_lost()


class HttpConnection:
    """One keep-alive connection, used one of two ways.

    `request()` sends once and awaits the status (paced runs). `run_closed_loop()` chains
    requests inside the protocol callbacks — response parsed, latency counted, next request
    written — with no future or timer per request, which is what makes max-throughput fast.
    """

    def __init__(self, target: HttpTarget, timeout_s: float) -> None:
        self._target = target
        self._timeout_s = timeout_s
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[int] | None = None
        self._status = 0
        self._remaining = -1  # body bytes still expected; -1: headers not parsed yet
        self._chunked = False
        self._until_close = False
        self._keep_alive = True
        self._loop = asyncio.get_running_loop()
        # closed-loop state
        self._schedule: Schedule | None = None
        self._tally: Tally | None = None
        self._cycle: asyncio.Future[None] | None = None
        self._sent = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        # the last keep-alive response with a Content-Length: head bytes, total size, status.
        # Load tests repeat one request, so most responses are byte-identical in framing.
        self._known_head = b"\0"
        self._known_total = -1
        self._known_status = 0
        self._known_code = ""
        self._known_failed = False
        self._request_bytes = target.request
        self._record: Callable[[str, float, bool, float], None] = _ignore_response
        self._next_index: Callable[[], int | None] = _no_index
        self._write: Callable[[bytes], None] = _discard

    async def _connect(self) -> None:
        self._buffer.clear()
        self._remaining = -1
        try:
            transport, _ = await self._loop.create_connection(
                lambda: _Socket(self), self._target.host, self._target.port
            )
        except ConnectionRefusedError as exc:
            raise TransportError("connection refused") from exc
        except OSError as exc:
            raise TransportError("connect") from exc
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._write = transport.write

    def _needs_connect(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    # socket events --------------------------------------------------------------------------
    def connection_lost(self) -> None:
        """A body read until close ends here; any other pending request failed."""
        self._transport = None
        if self._until_close and self._remaining >= 0:
            self._finish()
        else:
            self._fail("read")

    def data_received(self, data: bytes) -> None:
        """Accumulate bytes and complete the request once the whole response is in."""
        if (
            self._remaining < 0
            and len(data) == self._known_total
            and not self._buffer
            and data.startswith(self._known_head)
        ):
            # same head (status, Content-Length, every header) as last time and exactly one
            # response's worth of bytes: it is complete and needs no parsing
            cycle = self._cycle
            if cycle is not None:  # closed loop, inlined: count, then send the next at once
                now = _monotonic()
                self._record(self._known_code, now - self._sent, self._known_failed, now)
                if self._next_index() is None:
                    self._end_cycle()
                else:
                    self._sent = now
                    self._write(self._request_bytes)
                return
            self._status = self._known_status
            self._keep_alive = True
            self._chunked = False
            self._finish()
            return
        self._buffer += data
        if self._remaining < 0 and not self._parse_head():
            return
        if self._chunked:
            if self._skip_chunks():
                self._finish()
        elif self._until_close:
            self._buffer.clear()
        elif len(self._buffer) >= self._remaining:
            del self._buffer[: self._remaining]
            self._finish()

    # parsing ----------------------------------------------------------------------------------
    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[: end + 4])
        del self._buffer[: end + 4]
        lines = head[:-4].split(b"\r\n")
        try:
            status = int(lines[0].split(b" ", 2)[1])
        except (IndexError, ValueError):
            self._abort("protocol")
            return False
        if status < 200:  # 100 Continue and friends: the real response follows
            return self._parse_head() if self._buffer else False
        length = -1
        chunked = False
        keep_alive = lines[0].startswith(b"HTTP/1.1")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"connection":
                token = value.strip().lower()
                keep_alive = token != b"close" and (keep_alive or token == b"keep-alive")
        self._status = status
        self._keep_alive = keep_alive
        self._chunked = chunked
        self._until_close = False
        if self._target.head or status in _NO_BODY_STATUS or chunked:
            self._remaining = 0
        elif length >= 0:
            self._remaining = length
            if keep_alive:
                self._known_head = head
                self._known_total = len(head) + length
                self._known_status = status
                self._known_code = _STATUS_TEXT.get(status) or str(status)
                self._known_failed = self._known_code not in _SUCCESS_TEXT
        else:
            self._remaining = 0
            self._until_close = True
            self._keep_alive = False
        return True

    def _skip_chunks(self) -> bool:
        """Consume complete chunks; True once the terminating chunk and trailers are in."""
        buffer = self._buffer
        while True:
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                return False
            size = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
            if size == 0:
                if buffer[line_end + 2 : line_end + 4] == b"\r\n":
                    del buffer[: line_end + 4]
                    return True
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    return False
                del buffer[: trailer_end + 4]
                return True
            if len(buffer) < line_end + 2 + size + 2:
                return False
            del buffer[: line_end + 2 + size + 2]

    # completion -------------------------------------------------------------------------------
    def _finish(self) -> None:
        status = self._status
        self._remaining = -1
        self._until_close = False
        if not self._keep_alive and self._transport is not None:
            self._transport.close()
            self._transport = None
        cycle = self._cycle
        if cycle is not None:
            now = time.monotonic()
            code = _STATUS_TEXT.get(status) or str(status)
            assert self._tally is not None and self._schedule is not None
            self._tally.response(code, now - self._sent, code not in _SUCCESS_TEXT, now)
            if self._transport is None or self._schedule.next_index() is None:
                self._end_cycle()
            else:
                self._sent = now
                self._transport.write(self._target.request)
            return
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(status)

    def _fail(self, kind: str) -> None:
        cycle = self._cycle
        if cycle is not None:
            if not cycle.done():
                assert self._tally is not None
                self._tally.transport_error(kind, time.monotonic())
                self._end_cycle()
            return
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransportError(kind))

    def _abort(self, kind: str) -> None:
        """Give up on the socket (bad response, timeout) and fail the request in flight."""
        transport = self._transport
        self._transport = None
        self._fail(kind)
        if transport is not None:
            transport.abort()

    def _end_cycle(self) -> None:
        cycle = self._cycle
        self._cycle = None
        if cycle is not None and not cycle.done():
            cycle.set_result(None)

    def _watch(self) -> None:
        """Closed-loop timeout check, every half timeout instead of a timer per request."""
        if self._cycle is not None and time.monotonic() - self._sent > self._timeout_s:
            self._abort("timeout")
        self._watchdog = self._loop.call_later(self._timeout_s / 2, self._watch)

    # public -----------------------------------------------------------------------------------
    async def request(self) -> str:
        """Send the request (reconnecting if needed) and return the HTTP status as a string."""
        if self._needs_connect():
            await self._connect()
        transport = self._transport
        assert transport is not None
        waiter: asyncio.Future[int] = self._loop.create_future()
        self._waiter = waiter
        transport.write(self._target.request)
        timer = self._loop.call_later(self._timeout_s, self._abort, "timeout")
        try:
            status = await waiter
        finally:
            timer.cancel()
        return _STATUS_TEXT.get(status) or str(status)

    async def run_closed_loop(self, schedule: Schedule, tally: Tally) -> None:
        """Send back-to-back until the schedule is exhausted, counting into `tally`."""
        self._schedule = schedule
        self._tally = tally
        self._record = tally.response
        self._next_index = schedule.next_index
        self._watchdog = self._loop.call_later(self._timeout_s / 2, self._watch)
        try:
            while schedule.next_index() is not None:
                if self._needs_connect():
                    try:
                        await self._connect()
                    except TransportError as exc:
                        tally.transport_error(exc.kind, time.monotonic())
                        await asyncio.sleep(0)  # a refused connect must not starve the loop
                        continue
                cycle: asyncio.Future[None] = self._loop.create_future()
                self._cycle = cycle
                transport = self._transport
                assert transport is not None
                self._sent = time.monotonic()
                transport.write(self._target.request)
                await cycle
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._cycle = None

    @staticmethod
    def failed(code: str) -> bool:
        """HTTP statuses >= 400 are failures (as wrk and fortio count them)."""
        return code not in _SUCCESS_TEXT

    async def close(self) -> None:
        """Close the socket if open."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None


_STATUS_TEXT = {code: str(code) for code in range(100, 600)}
_SUCCESS_TEXT = frozenset(str(code) for code in range(100, 400))
