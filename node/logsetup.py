"""Logging for long-running commands: standard :mod:`logging`, as text or JSON lines.

``hashfed serve`` calls :func:`configure_logging` once, from ``[log]`` in hashfed.toml
or its ``--log-level``/``--log-format`` flags. Every hashfed logger is named
``hashfed.<area>`` (``hashfed.access``, ``hashfed.sync``, ``hashfed.witness``,
``hashfed.cases``, ``hashfed.serve``...) and passes its facts as ``extra`` fields,
so the JSON format carries them as keys::

    {"time": "2026-11-30T10:00:00.123Z", "level": "INFO", "logger": "hashfed.sync",
     "message": "p.test/bank: advanced 0 -> 3 from p", "event": "sync", "origin": ...}

and the text format puts the same message on one line after the time, level and
logger. Nothing logs secrets: case numbers, PINs, tokens and email addresses are
never passed to a logger (the access log names routes, not paths: node/http/accesslog.py).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import IO, Any, TypeVar

import click
from hashfed.node.config import LOG_FORMATS, LOG_LEVELS, LogConfig
from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _utc(record: logging.LogRecord) -> str:
    """Returns the record's time as RFC 3339 UTC with milliseconds."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class _UtcFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


class _JsonLines(JsonFormatter):
    """One JSON object per record: time (UTC), level, logger, message and the extra fields."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record)


def make_formatter(fmt: str) -> logging.Formatter:
    """Returns the formatter for fmt, ``text`` or ``json``."""
    if fmt == "json":
        formatter: logging.Formatter = _JsonLines(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            json_ensure_ascii=False,
        )
        return formatter
    if fmt == "text":
        return _UtcFormatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {fmt!r}; use text or json")


def configure_logging(level: str, fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    """Sends every log record at level or above to stream (stderr) in format fmt.

    Replaces the handlers of the root logger, so calling it twice does not
    double the lines; returns the handler installed.
    """
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's own access logger would log raw paths (case numbers): ours replaces it.
    logging.getLogger("aiohttp.access").disabled = True
    # aiohttp's server logger quotes the raw request (a PIN header, a case number in
    # the path) and the client's address when it refuses a malformed request.
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _RawRequestFilter) for f in server.filters):
        server.addFilter(_RawRequestFilter())
    return handler


class _RawRequestFilter(logging.Filter):
    """Replaces what aiohttp's server logger says about a request it could not handle
    with one fixed line: its message and traceback quote the raw request line and
    headers (case numbers, PINs, tokens) and the client's address."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = "refused a malformed HTTP request or failed to handle one"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


F = TypeVar("F", bound=Callable[..., Any])


def log_options(command: F) -> F:
    """Adds ``--log-level`` and ``--log-format`` (default: ``[log]`` in hashfed.toml)."""
    command = click.option(
        "--log-format",
        type=click.Choice(LOG_FORMATS),
        help="text, or json (one object per line). Default: [log] format.",
    )(command)
    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        help="Least severe level logged. Default: [log] level.",
    )(command)


def start_logging(config: LogConfig, level: str | None, fmt: str | None) -> None:
    """Configures logging to stderr from [log], with the flags (if given) winning."""
    configure_logging((level or config.level).lower(), fmt or config.format)
