"""podium.tokens: hashing, constant-time matching, the headers a token may arrive in, tokens in URLs."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import pytest

from podium.tokens import (
    TokenSet,
    hash_token,
    new_token,
    redact_url,
    split_url_token,
    token_from_headers,
    url_with_token,
)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_hash_is_sha256_hex() -> None:
    assert hash_token("abc") == hashlib.sha256(b"abc").hexdigest()


def test_new_tokens_are_long_random_and_url_safe() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50
    for t in tokens:
        assert len(t) >= 40
        assert all(c.isalnum() or c in "-_" for c in t)


def test_token_set_keeps_only_digests_and_matches() -> None:
    ts = TokenSet.from_tokens(["alpha", "beta", ""])
    assert len(ts) == 2 and ts
    assert "alpha" not in repr(ts) and all(h != "alpha" for h in ts.hashes)
    assert set(ts.hashes) == {hash_token("alpha"), hash_token("beta")}
    assert ts.matches("alpha") and ts.matches("beta")
    assert not ts.matches("gamma") and not ts.matches("") and not ts.matches(None)
    assert not ts.matches("ALPHA")


def test_token_set_from_hashes_and_adding() -> None:
    ts = TokenSet([hash_token("one").upper(), " "])
    assert len(ts) == 1 and ts.matches("one")
    both = ts.with_tokens(["two"])
    assert both.matches("one") and both.matches("two") and not ts.matches("two")


def test_empty_set_matches_nothing() -> None:
    ts = TokenSet()
    assert not ts and not ts.matches("anything")


def test_matches_compares_every_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    import podium.tokens as mod

    calls: list[bytes] = []
    real = mod.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append(a)
        return real(a, b)

    monkeypatch.setattr(mod.hmac, "compare_digest", spy)
    ts = TokenSet.from_tokens(["first", "second", "third"])
    assert ts.matches("first")
    assert len(calls) == 3  # no early exit on the first match


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer tok1"}, "tok1"),
        ({"authorization": "bearer  tok1 "}, "tok1"),
        ({"Authorization": _basic("podium", "tok2")}, "tok2"),
        ({"Authorization": _basic("tok3", "")}, "tok3"),
        ({"Authorization": _basic("u", "pa:ss")}, "pa:ss"),
        ({"X-Client-Token": "tok4"}, "tok4"),
        ({"x-client-token": "tok4"}, "tok4"),
        ({"Authorization": "Bearer a", "X-Client-Token": "b"}, "a"),
        ({"Authorization": "Basic !!notbase64", "X-Client-Token": "b"}, "b"),
        ({"Authorization": "Digest xyz"}, None),
        ({"Authorization": "Bearer "}, None),
        ({"X-Client-Token": "  "}, None),
        ({}, None),
    ],
)
def test_token_from_headers(headers: dict[str, str], expected: str | None) -> None:
    assert token_from_headers(headers) == expected


def test_token_from_httpx_userinfo_url() -> None:
    """httpx turns a URL's userinfo into Basic auth: the form MADSci clients can use unmodified."""
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(token_from_headers(request.headers))
        return httpx.Response(200)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        http.get("http://podium:s3cret-tok@host:8005/state")
        http.get(url_with_token("http://host:8005", "t_-0k") + "/nodes")
    assert seen == ["s3cret-tok", "t_-0k"]


def test_urls_with_tokens() -> None:
    assert split_url_token("http://podium:tok@h:1/p?q=1") == ("http://h:1/p?q=1", "tok")
    assert split_url_token("http://tok@h:1") == ("http://h:1", "tok")
    assert split_url_token("http://h:1/") == ("http://h:1/", None)
    assert split_url_token("http://u:p%40ss@h") == ("http://h", "p@ss")
    assert url_with_token("http://h:1", "tok") == "http://podium:tok@h:1"
    assert url_with_token("http://old:x@h:1", "new") == "http://podium:new@h:1"
    assert url_with_token("http://old:x@h:1", None) == "http://h:1"
    assert split_url_token(url_with_token("http://h", "a/b@c"))[1] == "a/b@c"
    assert redact_url("http://podium:tok@h:1/x") == "http://podium:***@h:1/x"
    assert redact_url("http://tok@h") == "http://***@h"
    assert redact_url("http://h:1") == "http://h:1"


def test_workcell_file_node_entries_take_a_url_and_token_mapping(tmp_path: Path) -> None:
    from podium.tokens import split_url_token
    from podium.workcell import load_workcell

    path = tmp_path / "workcell.yaml"
    path.write_text(
        "name: cell\n"
        "nodes:\n"
        "  arm: http://127.0.0.1:2001\n"
        "  reader: {url: 'http://127.0.0.1:2002', token: 's3cret'}\n"
    )
    cell = load_workcell(path)
    assert cell.nodes["arm"] == "http://127.0.0.1:2001"
    assert split_url_token(cell.nodes["reader"]) == ("http://127.0.0.1:2002", "s3cret")
    path.write_text("name: cell\nnodes:\n  reader: {url: 'http://x:1', token: 's', port: 3}\n")
    with pytest.raises(Exception, match="'url' and 'token' only"):
        load_workcell(path)
