"""TOML configuration files read strictly: errors name the file and the line (``path:line: what is wrong``).

:mod:`tomllib` gives values, not positions; :func:`header_line` and :func:`key_line` find the line of a
table header or of a key inside a table by scanning the text, which is enough for the flat files podium reads
(``clients.toml``, ``workers.toml``, ``schedules.toml``).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from podium.errors import ConfigError

__all__ = ["header_line", "key_line", "read_toml", "where"]


def header_line(text: str, name: str, parent: str | None = None) -> int | None:
    """The line (1-based) of the table header ``[name]`` (or ``[parent.name]``), ``None`` if absent."""
    key = re.escape(name)
    quoted = f"(?:{key}|\"{key}\"|'{key}')"
    prefix = rf"{re.escape(parent)}\s*\.\s*" if parent else ""
    pattern = re.compile(rf"^[ \t]*\[[ \t]*{prefix}{quoted}[ \t]*\]", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def key_line(text: str, table_line: int | None, key: str) -> int | None:
    """The line of ``key = ...`` in the table whose header is on ``table_line`` (0: the top of the file,
    before any table); the header's line when the key is not found there, ``None`` without a table line."""
    if table_line is None:
        return None
    lines = text.splitlines()
    for i in range(table_line, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("["):
            break
        if re.match(rf"(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=", stripped):
            return i + 1
    return table_line or None


def where(path: Path, line: int | None) -> str:
    """``path:line`` (or ``path`` when the line is not known)."""
    return f"{path}:{line}" if line else str(path)


def read_toml(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """The text and the parsed content of a TOML file; :class:`ConfigError` naming the file (and the line of a
    syntax error) when it is missing, unreadable or not TOML. ``what`` names the file's role in messages."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file: {exc}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else None
        raise ConfigError(f"{where(path, line)}: invalid TOML in {what} file: {exc}") from None
