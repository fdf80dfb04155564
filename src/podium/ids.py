"""Identifiers: ULIDs everywhere.

:func:`new_ulid_str` returns 26-character Crockford base32 ULIDs that sort lexicographically by creation
time, and strictly increase within one process even inside a single millisecond (monotonic ULIDs), so
ordering by id is ordering by creation.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

__all__ = [
    "derived_ulid_str",
    "is_ulid",
    "new_ulid_str",
    "span_id_of",
    "trace_id_of",
    "traceparent_of",
    "ulid_timestamp_ms",
]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_BITS = 80
_lock = threading.Lock()
_last = 0


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # every 10-bit value as two characters
_SHIFTS = tuple(range(120, -1, -10))  # 13 chunks of 10 bits cover the 130 bits of 26 characters


def _encode(value: int) -> str:
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


def new_ulid_str() -> str:
    """Return a new ULID as a string, greater than every ULID this process made before."""
    global _last
    ts_ms = time.time_ns() // 1_000_000
    candidate = (ts_ms << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big")
    with _lock:
        if candidate <= _last:
            candidate = _last + 1
        _last = candidate
    return _encode(candidate)


def derived_ulid_str(ts_ms: int, key: str) -> str:
    """A ULID for ``ts_ms`` whose random part is a hash of ``key``: the same arguments give the same ULID
    everywhere (an idempotency key that still sorts by time, e.g. a schedule's occurrence)."""
    if not 0 <= ts_ms < 1 << 48:
        raise ValueError(f"ts_ms out of the ULID range: {ts_ms!r}")
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:10], "big")
    return _encode((ts_ms << _RANDOM_BITS) | digest)


def trace_id_of(key: str) -> int:
    """A W3C trace id (128 bits) for ``key``: a ULID's own bits (a job's trace is named by its id), else a hash."""
    if is_ulid(key):
        n = 0
        for c in key.upper():
            n = (n << 5) | _DECODE[c]
        return n & ((1 << 128) - 1) or 1
    return int.from_bytes(hashlib.sha256(f"trace:{key}".encode()).digest()[:16], "big") or 1


def span_id_of(key: str) -> int:
    """A W3C span id (64 bits, never 0) for ``key`` (``job:<id>``, ``task:<id>``, ``step:<run>:<index>``)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") or 1


def traceparent_of(trace_key: str, span_key: str) -> str:
    """The W3C ``traceparent`` (sampled) naming the span ``span_key`` in the trace ``trace_key``: the same
    everywhere, so a span can be named (and parented across processes) without a tracer."""
    return f"00-{trace_id_of(trace_key):032x}-{span_id_of(span_key):016x}-01"


def ulid_timestamp_ms(value: str) -> int:
    """Return the millisecond timestamp encoded in a ULID string."""
    if not is_ulid(value):
        raise ValueError(f"not a ULID: {value!r}")
    n = 0
    for c in value.upper():
        n = (n << 5) | _DECODE[c]
    return n >> _RANDOM_BITS


def is_ulid(value: object) -> bool:
    """Tell whether ``value`` is a well-formed ULID string."""
    return (
        isinstance(value, str)
        and len(value) == 26
        and value[0] in "01234567"
        and all(c in _DECODE for c in value.upper())
    )
