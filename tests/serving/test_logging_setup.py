"""Log lines: JSON with bound context for machines, console text for people, stdlib routed in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from serving import configure_logging
from serving.logging_setup import level_number, reset_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    structlog.contextvars.clear_contextvars()
    reset_logging()  # leave no configuration behind for whatever runs next


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_bound_operation_context(captured: io.StringIO) -> None:
    configure_logging(level="info", json=True, stream=captured)
    log = structlog.get_logger("meshplane.test")
    structlog.contextvars.bind_contextvars(operation_id="op-42", mesh="istio", cluster="east")
    log.info("operation.started", step=1)
    structlog.contextvars.unbind_contextvars("cluster")
    log.warning("operation.slow")
    log.debug("operation.detail")  # below the level: dropped

    first, second = _lines(captured)
    assert first["event"] == "operation.started"
    assert first["operation_id"] == "op-42"
    assert first["mesh"] == "istio"
    assert first["cluster"] == "east"
    assert first["step"] == 1
    assert first["level"] == "info"
    assert first["logger"] == "meshplane.test"
    stamp = datetime.fromisoformat(str(first["timestamp"]).replace("Z", "+00:00"))
    offset = stamp.utcoffset()
    assert offset is not None
    assert offset.total_seconds() == 0
    assert second["event"] == "operation.slow"
    assert second["operation_id"] == "op-42"
    assert "cluster" not in second


def test_exceptions_render_as_text_inside_json(captured: io.StringIO) -> None:
    configure_logging(json=True, stream=captured)
    try:
        raise ValueError("bad values file")
    except ValueError:
        structlog.get_logger().exception("render.failed")
    (line,) = _lines(captured)
    assert line["level"] == "error"
    assert "ValueError: bad values file" in str(line["exception"])


def test_stdlib_loggers_are_routed_and_noisy_ones_held_at_warning(
    captured: io.StringIO,
) -> None:
    configure_logging(level="debug", json=True, stream=captured)
    structlog.contextvars.bind_contextvars(operation_id="op-7")
    logging.getLogger("grpc._server").info("chatty grpc internals")
    logging.getLogger("aiohttp.access").debug("chatty access log")
    logging.getLogger("kubernetes.client.rest").warning("API server slow: %s", "3s")
    logging.getLogger("meshplane.somewhere").debug("our own stdlib debug line")

    lines = _lines(captured)
    assert [line["event"] for line in lines] == [
        "API server slow: 3s",
        "our own stdlib debug line",
    ]
    assert lines[0]["logger"] == "kubernetes.client.rest"
    assert lines[0]["level"] == "warning"
    assert lines[0]["operation_id"] == "op-7"


def test_console_renderer_when_json_is_off(captured: io.StringIO) -> None:
    configure_logging(json=False, stream=captured)
    structlog.contextvars.bind_contextvars(mesh="linkerd")
    structlog.get_logger().info("adapter.ready", port=50051)
    text = captured.getvalue()
    assert "adapter.ready" in text
    assert "mesh=linkerd" in text
    assert "port=50051" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def _fail_holding(secret: str) -> None:
    link_token = secret
    raise RuntimeError(f"failed after reading {len(link_token)} bytes")


@pytest.mark.parametrize("as_json", [False, True])
def test_tracebacks_never_show_local_variables(captured: io.StringIO, as_json: bool) -> None:
    configure_logging(json=as_json, stream=captured)
    try:
        _fail_holding("-".join(("s3cr3t", "link", "token")))  # not in any source line
    except RuntimeError:
        structlog.get_logger().exception("handler.failed")
    text = captured.getvalue()
    assert "handler.failed" in text and "_fail_holding" in text  # the traceback is there
    assert "s3cr3t-link-token" not in text


def test_json_is_chosen_when_the_stream_is_not_a_terminal(captured: io.StringIO) -> None:
    configure_logging(stream=captured)  # StringIO.isatty() is False
    structlog.get_logger().info("picked.json")
    assert _lines(captured)[0]["event"] == "picked.json"


def test_reconfiguring_replaces_the_root_handler(captured: io.StringIO) -> None:
    configure_logging(json=True, stream=captured)
    configure_logging(json=True, stream=captured)
    logging.getLogger("meshplane.x").warning("once")
    assert len(_lines(captured)) == 1


def test_unknown_level_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        level_number("verbose")
    assert level_number("WARNING") == logging.WARNING


def test_reset_leaves_no_handler_or_level_behind(captured: io.StringIO) -> None:
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    configure_logging(level="error", json=True, stream=captured)
    reset_logging()
    assert root.handlers == handlers_before
    assert logging.getLogger("grpc").level == logging.NOTSET
    structlog.get_logger().debug("after.reset")  # structlog defaults: not filtered, not ours
    assert captured.getvalue() == ""
