"""The one checked join for every file path the workcell builds from outside input."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath, PureWindowsPath

from podium.workcell.errors import UnsafePathError

__all__ = ["safe_filename", "safe_join"]

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]")


def safe_filename(name: str) -> str:
    """Reduce an uploaded file's name to its last component, made of plain characters only.

    Raises :class:`UnsafePathError` for an empty name or one that is only dots.
    """
    last = PureWindowsPath(PurePosixPath(name.replace("\\", "/")).name).name
    cleaned = _UNSAFE_CHARS.sub("_", last).strip(" ")
    if not cleaned or set(cleaned) <= {"."}:
        raise UnsafePathError(f"unusable file name {name!r}", field="filename")
    return cleaned


def safe_join(base: str | Path, *parts: str) -> Path:
    """Join ``parts`` under ``base`` and prove the result stays inside ``base``.

    Absolute parts, ``..`` that climbs out, and symlinks that lead outside all raise
    :class:`UnsafePathError`; nothing is created.
    """
    root = Path(base).resolve()
    for part in parts:
        if not part or PurePosixPath(part).is_absolute() or PureWindowsPath(part).is_absolute():
            raise UnsafePathError(f"path part {part!r} is empty or absolute", field="path")
        if "\x00" in part:
            raise UnsafePathError("path part contains a NUL byte", field="path")
    candidate = root.joinpath(*parts).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(f"path {'/'.join(parts)!r} escapes {root}", field="path")
    return candidate
