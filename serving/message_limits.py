"""Message size limits every meshplane process agrees on, stated once.

A server accepts and sends messages up to `MAX_MESSAGE_BYTES`. The coordinator accepts at most
`ADAPTER_RESPONSE_BYTES` from an adapter (one answer, or one event of ``StreamEvents``), and the
other limits are derived from it, so an adapter that keeps to them can never send the coordinator
something it cannot read:

- `MAX_EVENT_BYTES`: one encoded adapter ``Event`` (the adapter truncates free text to fit, see
  `serving.event_text`); a sixteenth of the coordinator's limit.
- `MAX_ECHOED_REQUEST_BYTES`: the part of an ``ApplyOperationRequest`` that the answer's
  ``Operation`` repeats (ids, version, namespace, parameters, username, cluster names); the
  coordinator refuses a larger request before forwarding it, so it never receives an answer it
  cannot read for an operation the adapter created.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ADAPTER_RESPONSE_BYTES",
    "MAX_ECHOED_REQUEST_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_BYTES",
    "adapter_channel_options",
]

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""What every meshplane gRPC server receives and sends at most."""

ADAPTER_RESPONSE_BYTES = 4 * 1024 * 1024
"""What the coordinator receives from an adapter in one message (answers and streamed events)."""

MAX_EVENT_BYTES = ADAPTER_RESPONSE_BYTES // 16
"""One encoded adapter Event at most (256 KiB)."""

MAX_ECHOED_REQUEST_BYTES = ADAPTER_RESPONSE_BYTES // 4
"""The request fields an ApplyOperation answer repeats, encoded, at most (1 MiB)."""


def adapter_channel_options() -> list[tuple[str, Any]]:
    """Channel options of the coordinator's connections to adapters: requests as large as a
    server accepts, answers and events up to `ADAPTER_RESPONSE_BYTES`."""
    return [
        ("grpc.max_receive_message_length", ADAPTER_RESPONSE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
