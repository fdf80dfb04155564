"""Checks on what a request may send the workcell, made before anything is written.

Pure functions: each returns the value it accepts or raises :class:`~podium.errors.InvalidInputError`
naming the field. The HTTP edge and the engine call them first, so a refused input changes nothing, and
the loader calls them on stored records, so a record written before these checks existed is skipped
(with a warning) instead of making the workcell unloadable.
"""

from __future__ import annotations

import math
import unicodedata
from urllib.parse import urlsplit

from podium.errors import InvalidInputError

__all__ = [
    "MAX_FILE_NAME_BYTES",
    "MAX_NAME_CHARS",
    "MAX_PATH_CHARS",
    "MAX_URL_CHARS",
    "NODE_URL_SCHEMES",
    "check_file_input_paths",
    "check_finite",
    "check_json_value",
    "check_name",
    "check_node_url",
]

MAX_NAME_CHARS = 128
"""Longest node name, parameter key or file argument name."""
MAX_URL_CHARS = 2048
MAX_PATH_CHARS = 4096
MAX_FILE_NAME_BYTES = 255
"""The longest file name (one path component) file systems keep."""
NODE_URL_SCHEMES = frozenset({"http", "https", "inprocess"})
"""``inprocess://name`` names a node the engine was given in-process (tests, demos)."""

_FORBIDDEN_IN_NAMES = frozenset('/\\?#%"<>')
_INT64 = (-(2**63), 2**63 - 1)
MAX_JSON_DEPTH = 64


def check_name(value: str, *, field: str, max_chars: int = MAX_NAME_CHARS) -> str:
    """A name that is used in URL paths and file names: 1 to ``max_chars`` printable characters, no path
    separators, no URL delimiters, no leading or trailing blanks."""
    if not value:
        raise InvalidInputError("must not be empty", field=field)
    if len(value) > max_chars:
        raise InvalidInputError(f"is {len(value)} characters long; at most {max_chars} allowed", field=field)
    bad = sorted({c for c in value if c in _FORBIDDEN_IN_NAMES or unicodedata.category(c)[0] in "CZ"} - {" "})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidInputError(
            f"must not contain {shown} (a name is used in URLs and file names)", field=field
        )
    if value != value.strip():
        raise InvalidInputError("must not start or end with blanks", field=field)
    return value


def check_node_url(value: str, *, field: str = "node_url") -> str:
    """A node URL: ``http(s)://host[:port][/path]`` (or ``inprocess://name``), without blanks."""
    if len(value) > MAX_URL_CHARS:
        raise InvalidInputError(f"is longer than {MAX_URL_CHARS} characters", field=field)
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in value):
        raise InvalidInputError("must not contain blanks or control characters", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        raise InvalidInputError(f"{value!r} is not a URL ({exc})", field=field) from None
    if parts.scheme not in NODE_URL_SCHEMES or not parts.hostname:
        raise InvalidInputError(
            f"{value!r} is not a node URL: use http://host:port (schemes: {', '.join(sorted(NODE_URL_SCHEMES))})",
            field=field,
        )
    return value


def check_finite(value: float, *, field: str) -> float:
    """A number that is neither NaN nor infinite."""
    if not math.isfinite(value):
        raise InvalidInputError(f"must be a finite number, not {value}", field=field)
    return value


def check_file_input_paths(paths: dict[str, str], *, field: str = "file_input_paths") -> dict[str, str]:
    """File parameters' original paths: keys are names, values paths whose last part a file system keeps."""
    for key, path in paths.items():
        check_name(key, field=f"{field}.{key[:40]}")
        if len(path) > MAX_PATH_CHARS:
            raise InvalidInputError(f"is longer than {MAX_PATH_CHARS} characters", field=f"{field}.{key}")
        if "\x00" in path:
            raise InvalidInputError("contains a NUL byte", field=f"{field}.{key}")
        last = path.replace("\\", "/").rsplit("/", 1)[-1]
        if len(last.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME_BYTES:
            raise InvalidInputError(
                f"file name is longer than {MAX_FILE_NAME_BYTES} bytes", field=f"{field}.{key}"
            )
    return paths


def check_json_value(value: object, *, field: str) -> None:
    """A JSON value the store keeps exactly: integers within 64 bits (as MADSci's MongoDB), finite numbers,
    nesting at most :data:`MAX_JSON_DEPTH` deep. The error names the path (``body.steps.0.args.x``)."""
    stack: list[tuple[object, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InvalidInputError(f"is nested deeper than {MAX_JSON_DEPTH} levels", field=path)
        if isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        if isinstance(item, int):
            if not _INT64[0] <= item <= _INT64[1]:
                raise InvalidInputError(f"{item} is outside the 64-bit integer range", field=path)
        elif isinstance(item, float):
            check_finite(item, field=path)
        elif isinstance(item, dict):
            stack += [(v, f"{path}.{k}", depth + 1) for k, v in item.items()]
        elif isinstance(item, list | tuple):
            stack += [(v, f"{path}.{i}", depth + 1) for i, v in enumerate(item)]
