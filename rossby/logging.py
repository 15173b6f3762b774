"""structlog configured once: console lines on a TTY, JSON lines otherwise.

Log events never carry ciphertext, keys, codes or raw contacts; callers log
hashed or masked identifiers only. The one exception is the dev outbox
notifier, whose job is to show codes in the log; it warns at start-up.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    """Configure structlog and the stdlib root logger (drivers log there)."""
    use_console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    text_renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    renderer = text_renderer
    logger_factory: Callable[..., Any] = structlog.PrintLoggerFactory(file=sys.stderr)
    binary = getattr(sys.stderr, "buffer", None)
    if not use_console and binary is not None:
        # JSON lines rendered by orjson straight to bytes, written without
        # the text layer: one line per RPC is on every call's path, and this
        # halves its cost (docs/benchmarks.md, "Per-call overhead").
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        logger_factory = structlog.BytesLoggerFactory(file=binary)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processor=text_renderer, foreign_pre_chain=shared)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.WARNING))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]


__all__ = ["configure_logging", "get_logger"]
