"""In-process servers under test log through structlog's defaults unless a test configures
logging. Those defaults render an exception with rich, printing every frame's local variables:
seconds of CPU per logged error on a busy worker, and secrets in captured output. Before each
test, an unconfigured structlog keeps its default pipeline with plain tracebacks instead."""

from __future__ import annotations

import pytest
import structlog


def _use_plain_tracebacks() -> None:
    if structlog.is_configured():
        return  # a test (or the code it runs) chose its own configuration
    processors = list(structlog.get_config()["processors"])
    processors[-1] = structlog.dev.ConsoleRenderer(
        exception_formatter=structlog.dev.plain_traceback
    )
    structlog.configure(processors=processors)


@pytest.fixture(autouse=True)
def plain_tracebacks() -> None:
    """structlog's default pipeline, except that tracebacks are plain."""
    _use_plain_tracebacks()
