"""rxon.canonical_json's fast path (the C encoder) writes the same bytes as the reference writer."""

from __future__ import annotations

import random
from typing import Any

import pytest

from podium.wire import rxon


def _reference(payload: dict[str, Any]) -> bytes:
    data = rxon._normalise(payload, [])
    for name in ("security", "_signature"):
        data.pop(name, None)
    out: list[str] = []
    rxon._dump(data, out)
    return "".join(out).encode()


def _value(rng: random.Random, depth: int) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return rng.choice(["", "a", "ü ✓", 'q"\\\n\t', "\u2028", "x" * 20, "\x00\x1f\x7f", "𝄞 ﬀ"])
    if choice == 1:
        return rng.choice([0, -1, 7, 2**70, True, False])
    if choice == 2:
        return rng.choice([0.5, -1.25, 3.0, 1e-5, 1.5e-7, 1e16, 2.5e20, 123456.789, 0.1 + 0.2])
    if choice == 3:
        return None
    if choice in (4, 5):
        return rng.random() * 10 ** rng.randrange(-8, 20)
    if choice in (6, 7):
        keys = ["a", "B", "é", "ﬀ", "𝄞", "\x01", "z z", ""]  # sorted by code point, as the reference does
        return {rng.choice(keys) + str(i): _value(rng, depth + 1) for i in range(rng.randrange(4))}
    return [_value(rng, depth + 1) for _ in range(rng.randrange(4))]


def test_fast_path_matches_the_reference_writer() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        payload = {"results": [_value(rng, 0)], "z": _value(rng, 1), "security": {"signature": "s"}}
        assert rxon.canonical_json(payload) == _reference(payload)


def test_non_finite_floats_are_refused() -> None:
    with pytest.raises(ValueError):
        rxon.canonical_json({"x": float("nan")})


def test_a_signature_is_hmac_sha256_of_the_sorted_compact_json_without_security() -> None:
    """The HMAC rxon's workers compute (a vector made with hashlib and json, independently of podium)."""
    from podium.wire import rxon

    payload = {
        "job_id": "j1",
        "task_id": "t1",
        "worker_id": "w0",
        "data": {"x": 1.5, "n": 2},
        "costs": {"execution_time_seconds": 0.0001},
        "timestamp": 1765100000,
    }
    expected = "ab4f0a98255d0d1ec762e6a4d554b8afa9e49f77412b0c34db71bf21cfdf6607"
    assert rxon.sign_payload(payload, "secret-token") == expected
    signed = {**payload, "security": {"signature": expected, "signer_id": "w0"}}
    assert rxon.verify_signature(signed, expected, "secret-token")
    assert not rxon.verify_signature({**signed, "timestamp": 1765100001}, expected, "secret-token")
