"""JSON for bodies on the wire (the server's hot routes, webhooks, the SDKs' HTTP client): orjson.

orjson encodes and decodes several times faster than the standard library (a response or webhook body of
the benchmark: ~0.3 µs against ~3 µs). It writes UTF-8 (as ``ensure_ascii=False`` does), compact, and
``null`` for NaN and infinities (which JSON cannot carry); what it cannot encode (an integer wider than
64 bits, a type it does not know) goes to the standard encoder. Decoding is strict JSON: ``NaN`` literals
and lone surrogates are refused (``ValueError``), as the standard allows.

Not for what is signed: :func:`podium.wire.rxon.canonical_json` writes the reference's exact bytes.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "loads"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


loads = orjson.loads
"""Parse JSON text (``bytes`` or ``str``); ``ValueError`` (``orjson.JSONDecodeError``) if it is not JSON."""
