"""API tokens: stored hashed, compared in constant time, read from any of the headers podium accepts.

podium's rule: every endpoint but the public ones needs a token; tokens are kept only as SHA-256 digests
and compared with :func:`hmac.compare_digest`. This module is the one implementation (the jobs server,
the workcell API and instrument nodes all use it); it imports only the standard library.

A token travels in any of (first found wins)::

    Authorization: Bearer <token>
    Authorization: Basic base64(<user>:<token>)    # what httpx/requests send for http://user:<token>@host
    X-Client-Token: <token>

The Basic form is what makes unmodified MADSci clients work: they send no header of their own, but httpx
turns the userinfo of a URL into Basic auth, so ``http://podium:<token>@host:8005`` as the workcell or
node URL is enough. The user name is ignored (a URL with only a user, ``http://<token>@host``, also works).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = [
    "CLIENT_TOKEN_HEADER",
    "DOCS_PATHS",
    "TokenGuard",
    "TokenSet",
    "hash_token",
    "local_token_file",
    "new_token",
    "node_entry_url",
    "read_token_file",
    "redact_url",
    "split_url_token",
    "token_from_headers",
    "url_with_token",
    "write_token_file",
]

CLIENT_TOKEN_HEADER = "X-Client-Token"
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
"""FastAPI's documentation routes: public wherever a token guards an app."""
_URL_USER = "podium"


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe: it may go into a URL's userinfo as it is)."""
    return secrets.token_urlsafe(32)


class TokenSet:
    """The digests of the tokens that open an API; :meth:`matches` checks one in constant time.

    Only digests are kept. ``matches`` compares the candidate's digest with every stored digest (no early
    exit), so neither which token matched nor how many there are shows in the time it takes.
    """

    __slots__ = ("_hashes",)

    def __init__(self, hashes: Iterable[str] = ()) -> None:
        self._hashes: tuple[str, ...] = tuple(dict.fromkeys(h.strip().lower() for h in hashes if h.strip()))

    @classmethod
    def from_tokens(cls, tokens: Iterable[str]) -> TokenSet:
        """A set of the given tokens (empty strings are ignored)."""
        return cls(hash_token(t) for t in tokens if t)

    def with_tokens(self, tokens: Iterable[str]) -> TokenSet:
        """A new set with these tokens added."""
        return TokenSet([*self._hashes, *(hash_token(t) for t in tokens if t)])

    @property
    def hashes(self) -> tuple[str, ...]:
        """The stored digests."""
        return self._hashes

    def __len__(self) -> int:
        return len(self._hashes)

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def __repr__(self) -> str:
        return f"TokenSet(<{len(self._hashes)} token(s)>)"

    def matches(self, token: str | None) -> bool:
        """Whether ``token`` is one of the set's tokens."""
        if not token or not self._hashes:
            return False
        digest = hash_token(token).encode()
        found = False
        for stored in self._hashes:
            found |= hmac.compare_digest(stored.encode(), digest)
        return found


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():  # a plain dict: HTTP header names are case-insensitive
        if key.lower() == lowered:
            return val
    return None


def token_from_headers(headers: Mapping[str, str]) -> str | None:
    """The token a request carries (Bearer, Basic password, or ``X-Client-Token``), or ``None``."""
    auth = _header(headers, "Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            return value
        if scheme.lower() == "basic" and value:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            user, _, password = decoded.partition(":")
            if password or user:
                return password or user
    token = (_header(headers, CLIENT_TOKEN_HEADER) or "").strip()
    return token or None


def split_url_token(url: str) -> tuple[str, str | None]:
    """``http://user:tok@host:1/p`` -> ``("http://host:1/p", "tok")``; a URL without userinfo is unchanged.

    The token is the password, or the user when there is no password (``http://tok@host``).
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = unquote(password or user) or None
    return urlunsplit(parts._replace(netloc=hostport)), token


def url_with_token(url: str, token: str | None, *, user: str = _URL_USER) -> str:
    """``url`` with ``user:token`` as its userinfo (the form unmodified MADSci clients can use)."""
    bare, _ = split_url_token(url)
    if not token:
        return bare
    parts = urlsplit(bare)
    netloc = f"{quote(user, safe='')}:{quote(token, safe='')}@{parts.netloc}"
    return urlunsplit(parts._replace(netloc=netloc))


def redact_url(url: str) -> str:
    """``url`` with the password (or a lone user) of its userinfo replaced by ``***``, for display."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _ = userinfo.partition(":")
    shown = f"{user}:***" if sep else "***"
    return urlunsplit(parts._replace(netloc=f"{shown}@{hostport}"))


_Scope = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
_Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class TokenGuard:
    """ASGI middleware: every request but those to ``public`` paths needs a token of ``tokens``.

    A request without a token, or with one not in the set, is answered 401 with a JSON ``detail`` saying
    how to send one, before the app sees it (no route, body validation or lifespan work happens first).
    ``what`` names the API in that message (``"workcell"``, ``"node sealer_1"``).
    """

    def __init__(
        self,
        app: Callable[[_Scope, _Receive, _Send], Awaitable[None]],
        *,
        tokens: TokenSet,
        public: Collection[str] = DOCS_PATHS,
        what: str = "this API",
    ) -> None:
        self.app, self.tokens, self.public, self.what = app, tokens, frozenset(public), what

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket") or scope.get("path", "") in self.public:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = token_from_headers(headers)
        if self.tokens.matches(token):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "token required"})
            return
        detail = (
            f"{'invalid' if token else 'missing'} token for {self.what}: send 'Authorization: Bearer "
            f"<token>' (or 'X-Client-Token'), or put it in the URL as http://podium:<token>@host:port"
        )
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="podium", Basic realm="podium"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def write_token_file(path: str | Path, token: str) -> Path:
    """Write ``token`` to ``path``, readable by its owner only (mode 0600, parents made 0700)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: set it
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return path


def read_token_file(path: str | Path) -> str | None:
    """The token in ``path`` (first line, stripped), or ``None`` when there is no such file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    token = text.strip().splitlines()[0].strip() if text.strip() else ""
    return token or None


_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0", "ip6-localhost"}


def local_token_file(kind: str, url: str) -> Path | None:
    """Where a local server of ``kind`` listening at ``url``'s port announces its generated token to
    clients on the same machine and account (Jupyter-style): ``$PODIUM_RUNTIME_DIR``, else
    ``$XDG_RUNTIME_DIR/podium``, else ``~/.cache/podium/run``; ``None`` for a URL that is not loopback."""
    parts = urlsplit(split_url_token(url)[0])
    host = (parts.hostname or "").lower()
    if host not in _LOOPBACK and not host.startswith("127."):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    base = os.environ.get("PODIUM_RUNTIME_DIR")
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR"):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "podium"
    else:
        folder = Path.home() / ".cache" / "podium" / "run"
    return folder / f"{kind}-{port}.token"


def node_entry_url(entry: Any) -> Any:
    """A node entry of a workcell or settings file as a URL: a URL stays as it is; ``{url, token}``
    becomes ``http://podium:<token>@host:port`` (the node client takes the token back out of it)."""
    if isinstance(entry, dict) and "url" in entry:
        unknown = set(entry) - {"url", "token"}
        if unknown:
            raise ValueError(f"a node mapping has 'url' and 'token' only, not {sorted(unknown)}")
        token = entry.get("token")
        if token is not None and not isinstance(token, str):
            raise ValueError("a node's 'token' must be a string")
        return url_with_token(str(entry["url"]), token) if token else str(entry["url"])
    return entry
