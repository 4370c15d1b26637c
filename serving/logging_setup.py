"""structlog for every meshplane process: JSON lines for machines, a readable console for people.

Context bound with ``structlog.contextvars.bind_contextvars(operation_id=..., mesh=...,
cluster=...)`` appears in every line logged inside that context, including lines from stdlib
loggers (grpc, aiohttp, kubernetes), which are routed through the same renderer at WARNING so
their noise does not drown ours.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.typing import Processor

NOISY_LIBRARIES = ("grpc", "aiohttp", "kubernetes", "kubernetes_asyncio", "urllib3", "asyncio")

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _LineWriter:
    """A structlog logger writing one rendered line per event to a stream found at write time.

    Looking the stream up on every write (default: the current ``sys.stderr``) keeps logging
    working when something swaps ``sys.stderr`` after configuration.
    """

    def __init__(
        self, stream: Callable[[], TextIO], lock: threading.Lock, name: str | None = None
    ) -> None:
        self._stream = stream
        self._lock = lock
        self.name = name

    def msg(self, message: str) -> None:
        """Write one line."""
        with self._lock:
            out = self._stream()
            out.write(message + "\n")
            out.flush()

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


class _LineHandler(logging.Handler):
    """Stdlib handler that formats through structlog and writes via the same line writer."""

    def __init__(self, writer: _LineWriter, formatter: logging.Formatter) -> None:
        super().__init__()
        self._writer = writer
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.msg(self.format(record))
        except Exception:
            self.handleError(record)


_installed_handler: logging.Handler | None = None


def _add_logger_name(logger: Any, method_name: str, event_dict: Any) -> Any:
    """Name the module that logged (``structlog.get_logger(__name__)``) as ``logger``."""
    name = getattr(logger, "name", None)
    if name and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


def level_number(level: str) -> int:
    """``"info"`` → ``logging.INFO``; unknown names are an error, not a silent default."""
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}") from None


def _processors(*, json: bool, colors: bool) -> tuple[list[Processor], Processor]:
    """The processors every line goes through, and the renderer (JSON, else the console)."""
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if json:
        shared.append(structlog.processors.format_exc_info)
        return shared, structlog.processors.JSONRenderer(sort_keys=False)
    # Plain tracebacks: structlog's default (rich, when installed) prints every frame's local
    # variables, which puts tokens and request bodies in the log and costs seconds per error.
    return shared, structlog.dev.ConsoleRenderer(
        colors=colors, exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and stdlib logging for this process (calling again reconfigures).

    ``json=None`` picks JSON lines when the stream is not a TTY (containers, CI) and the
    console renderer otherwise. ``stream`` defaults to the current ``sys.stderr``.
    """
    global _installed_handler  # noqa: PLW0603 - one root handler per process, replaced on reconfigure
    threshold = level_number(level)

    def current_stream() -> TextIO:
        return stream if stream is not None else sys.stderr

    isatty = getattr(current_stream(), "isatty", None)
    on_terminal = bool(callable(isatty) and isatty())
    if json is None:
        json = not on_terminal

    shared, renderer = _processors(json=json, colors=on_terminal)
    lock = threading.Lock()
    writer = _LineWriter(current_stream, lock)

    def logger_factory(*args: Any) -> _LineWriter:
        return _LineWriter(current_stream, lock, str(args[0]) if args and args[0] else None)

    structlog.configure(
        processors=[_add_logger_name, *shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=logger_factory,
        cache_logger_on_first_use=False,
    )

    foreign_chain: list[Processor] = [structlog.stdlib.add_logger_name, *shared]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=foreign_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
    _installed_handler = _LineHandler(writer, formatter)
    root.addHandler(_installed_handler)
    root.setLevel(threshold)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(threshold, logging.WARNING))


def reset_logging() -> None:
    """Undo :func:`configure_logging`: structlog defaults, no root handler, library levels unset.

    For tests, so one test's configuration does not leak into the next.
    """
    global _installed_handler  # noqa: PLW0603 - see configure_logging
    structlog.reset_defaults()
    root = logging.getLogger()
    if _installed_handler is not None:
        root.removeHandler(_installed_handler)
        _installed_handler = None
    root.setLevel(logging.WARNING)
    for name in NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)


def bound_context() -> dict[str, Any]:
    """The context currently bound with ``bind_contextvars`` (for tests and error reports)."""
    return structlog.contextvars.get_contextvars()
