"""Structured logging on the standard library.

:func:`configure_logging` installs one handler on the root logger: JSON lines by default, human-readable
text with ``LOG_FORMAT=text``; ``LOG_LEVEL`` sets the level. Timestamps are ISO 8601 in the local zone,
so they honour ``TZ``.

Every line about a job, task, workflow, step, node or trace carries its id: bind ids for a block with
:func:`bind_ids` (context variables, so they follow the asyncio task) or pass them in ``extra=``.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from datetime import datetime
from typing import Any, TextIO

__all__ = ["ID_FIELDS", "JsonFormatter", "TextFormatter", "bind_ids", "configure_logging", "get_logger"]

ID_FIELDS = ("job_id", "task_id", "workflow_id", "step_id", "node", "worker_id", "trace_id")

_bound: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("podium_log_ids", default={})  # noqa: B039
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def bind_ids(**ids: str | None) -> contextlib.AbstractContextManager[None]:
    """Attach ids (``job_id=...``, ``trace_id=...``) to every log line written inside the block."""
    return _Bound({k: v for k, v in ids.items() if v is not None})


class _Bound:
    """What :func:`bind_ids` returns: a plain context manager, a fraction of a generator-based one's cost
    (every in-process task runs inside one)."""

    __slots__ = ("_ids", "_token")

    def __init__(self, ids: dict[str, str]) -> None:
        self._ids = ids
        self._token: contextvars.Token[dict[str, str]] | None = None

    def __enter__(self) -> None:
        self._token = _bound.set({**_bound.get(), **self._ids})

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _bound.reset(self._token)
            self._token = None


def _timestamp(created: float) -> str:
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = dict(_bound.get())
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, bound ids and extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_fields(record))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``ts level logger: message key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{_timestamp(record.created)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


def configure_logging(
    *, level: str | int | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Install podium's handler on the root logger (replacing one installed before); return it."""
    fmt = (fmt or os.environ.get("LOG_FORMAT") or "json").lower()
    level = level or os.environ.get("LOG_LEVEL") or "INFO"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    handler._podium = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_podium", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    return handler


def get_logger(name: str) -> logging.Logger:
    """A standard logger; podium's own loggers live under ``podium.``."""
    return logging.getLogger(name)
