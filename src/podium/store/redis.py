"""The Redis backend: several podium instances (and processes) share one store on one Redis server.

``RedisStore("redis://host:6379/0?prefix=podium")`` (redis-py's asyncio client; ``pip install
'podium[redis]'``). Every key starts with the prefix (``podium:`` by default), so deployments can share a
server. Each call is one Lua script (:mod:`podium.store.redis_lua` lists every key), so each is atomic on
the server: :meth:`RedisStore.apply` checks every version and lease first and writes only when all hold.
Data is held as compact JSON text (orjson), never decoded by the scripts.

Time comes from the injected clock: each script receives ``now`` as an argument, never Redis ``TIME``, so
:class:`~podium.clock.ManualClock` tests run unchanged. Takers waiting in :meth:`~podium.store.Store.take`
wake at once on enqueues and nacks from any instance: a take that finds nothing leaves the store's tag in
the queue's waiting set, and the next enqueue or nack there publishes the queue's name to each instance in
it (its channel ``<prefix>wake@<tag>``, subscribed at :meth:`~RedisStore.open`) and empties it, so an
instance whose takers found work, or which has none, reads nothing (no polling). A :class:`Wake`
op's name goes to the channel of its class (``<prefix>wake:job-end`` for ``job-end:<id>``), which a store
subscribes to only once something on it watches a name of that class (:meth:`RedisStore.watch`): an
instance nobody asks to wait for jobs never reads the other instances' job ends.

Durability is the server's: ``durable=False`` changes nothing here; see ``docs/deploy.md`` for what a
Redis restart keeps with and without AOF.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from podium.clock import Clock
from podium.errors import (
    ConflictError,
    LeaseLostError,
    MissingDependencyError,
    SchemaMismatchError,
    StoreError,
)
from podium.store import redis_lua
from podium.store.base import (
    SCHEMA_VERSION,
    Ack,
    Append,
    Delete,
    Dequeue,
    Enqueue,
    Fetch,
    HistoryEntry,
    Lease,
    Op,
    Put,
    Record,
    Store,
    Wake,
    dump_json_bytes,
    load_json,
    notify_queues,
    status_filter,
)

__all__ = ["DEFAULT_PREFIX", "LAYOUT_VERSION", "RedisStore", "redis_settings"]

log = logging.getLogger("podium.store.redis")

DEFAULT_PREFIX = "podium"
"""The key prefix when the URL names none (keys then start with ``podium:``)."""

LAYOUT_VERSION = f"redis-1/{SCHEMA_VERSION}"
"""The key layout this code reads and writes, kept in ``<prefix>:meta``; another one refuses to open."""

PIPELINES = 4
"""How many pipelines of store calls one store keeps in flight (each on its own connection)."""

LISTEN_RETRY_S = 1.0
"""The longest pause between the wake-up listener's attempts to reach Redis again (the driver's backoff)."""

_loads = load_json


def _opt(value: str | None) -> str:
    """An optional string as the scripts take it: ``''`` for none, else ``'=' + value``."""
    return "" if value is None else "=" + value


def _unopt(text: str) -> str | None:
    return text[1:] if text else None


def _time(value: float) -> str:
    """A clock time as text with every digit (the scripts store and compare it, never print it)."""
    return repr(float(value))


def redis_settings(url: str) -> tuple[str, str]:
    """Split a store URL into the URL redis-py reads and the key prefix (the ``prefix`` query argument,
    :data:`DEFAULT_PREFIX` if absent; a ``:`` is added unless it ends with one)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"not a Redis URL: {url!r} (redis://host:port/db?prefix=name)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    rest = []
    for key, value in query:
        if key == "prefix":
            prefix = value
        else:
            rest.append((key, value))
    if not prefix:
        raise ValueError(f"{url!r}: prefix must not be empty")
    if not prefix.endswith(":"):
        prefix += ":"
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


class RedisStore(Store):
    """See the module docstring. ``url`` is ``redis://host:port/db`` with an optional ``?prefix=name``, or
    a ``redis.asyncio.Redis`` client (Avtomatika's ``RedisStorage(client)``: the store opens its own
    connections with the client's settings); ``prefix`` (if given) overrides the URL's."""

    name = "redis"
    fetches_in_take = True

    def __init__(self, url: str | Any, *, clock: Clock | None = None, prefix: str | None = None) -> None:
        super().__init__(clock=clock)
        self._given: Any = None
        if isinstance(url, str):
            self.url, url_prefix = redis_settings(url)
        else:
            self._given, url_prefix = url, DEFAULT_PREFIX + ":"
            kwargs = url.connection_pool.connection_kwargs
            self.url = f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
        self.prefix = url_prefix if prefix is None else (prefix if prefix.endswith(":") else prefix + ":")
        self.channel = self.prefix + "wake"
        self._tag = os.urandom(8).hex()  # tells this store's own wake-ups from other instances'
        self._inbox = f"{self.channel}@{self._tag}"  # this store's queue wake-ups (see TAKE)
        self._client: Any = None
        self._pubsub: Any = None
        self._listener_client: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._calls: _Pipeliner | None = None
        self._classes: set[str] = set()  # Wake-name classes whose channel is subscribed (or being)
        self._live: set[str] = set()  # ... and those Redis confirmed
        self._subscribing: set[asyncio.Task[None]] = set()

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        client = self._connect()
        # The listener's own connection: the driver reconnects it (and subscribes again) for as long as
        # Redis is away, with its backoff, while store calls on the other connections fail at once.
        listener = self._connect(reconnect_forever=True)
        try:
            await client.hsetnx(self.prefix + "meta", "layout", LAYOUT_VERSION)  # a new deployment
            found = str(await client.hget(self.prefix + "meta", "layout"))
            if found != LAYOUT_VERSION:
                raise SchemaMismatchError(
                    found, LAYOUT_VERSION, f"a new prefix (?prefix=...) or deleting the keys {self.prefix}*"
                )
            pubsub = listener.pubsub()
            await pubsub.subscribe(self._inbox)
            # Wait until Redis confirms the subscription, so no wake-up published after open() is missed.
            message = await pubsub.get_message(timeout=5.0)
            if message is None or message["type"] != "subscribe":
                raise StoreError(f"Redis at {self.url} did not confirm the subscription to {self._inbox}")
        except Exception as exc:
            await client.aclose()
            await listener.aclose()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the Redis store at {self.url}: {exc}") from exc
        self._client, self._pubsub, self._listener_client = client, pubsub, listener
        self._calls = _Pipeliner(client)
        self._listener = asyncio.get_running_loop().create_task(self._listen(pubsub))

    def _connect(self, *, reconnect_forever: bool = False) -> Any:
        """A client (redis-py's command methods are typed for its sync and async clients alike: ``Any``)."""
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import ExponentialBackoff
        except ImportError as exc:
            raise MissingDependencyError("redis", "redis") from exc
        if self._given is None:
            pool = aioredis.ConnectionPool.from_url(self.url, decode_responses=True)
        else:  # the caller's settings, with the decoding the scripts' replies need
            pool = self._given.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": True}
        if reconnect_forever:
            kwargs["retry"] = Retry(ExponentialBackoff(cap=LISTEN_RETRY_S, base=0.01), -1)
        return aioredis.Redis.from_pool(
            aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        )

    async def close(self) -> None:
        if self._client is None:
            return
        client, pubsub, listener = self._client, self._pubsub, self._listener
        listener_client, calls = self._listener_client, self._calls
        self._client = self._pubsub = self._listener = self._listener_client = self._calls = None
        self._classes, self._live = set(), set()
        for task in builtins.list(self._subscribing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if calls is not None:
            await calls.drain()
            await calls.close()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        with contextlib.suppress(Exception):
            await pubsub.aclose()
        await listener_client.aclose()
        await client.aclose()

    async def _listen(self, pubsub: Any) -> None:
        """Wake local takers on the queues other instances announce (this store's own are woken in place)."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    channel = message["channel"]
                    cls = "" if channel == self._inbox else channel[len(self.channel) + 1 :]
                    if cls and cls not in self._live:
                        # A class's channel, subscribed for its first watcher (see watch): a wake-up
                        # published while the subscription was on its way was not heard, but recorded.
                        self._live.add(cls)
                        self._spawn(self._catch_up(cls))
                    else:
                        # Subscribed again after a reconnect: wake-ups published meanwhile were lost, so
                        # every local taker and watcher looks again.
                        self._notify(builtins.list(self._waiters))
                elif message["type"] == "message":
                    if message["channel"] == self._inbox:  # a queue another instance's take waits on
                        self._notify((message["data"],))
                        continue
                    tag, _, name = message["data"].partition(" ")
                    if tag != self._tag:
                        self._notify((name,))
        except asyncio.CancelledError:
            raise
        except Exception:  # not a lost connection (the driver handles those): takers wake at their deadlines
            log.exception("the Redis wake-up listener on %s stopped", self.channel)

    def watch(self, name: str) -> asyncio.Future[None]:
        """As :meth:`Store.watch`. A :class:`Wake` reaches the channel of its name's class (the text up to the
        first ``:``), which this store subscribes to at its first watcher of that class. Once Redis confirms
        the subscription, the watchers registered meanwhile are woken if their name was woken lately (each
        Wake leaves its name in Redis for :data:`~podium.store.redis_lua.WAKE_KEEP_S` seconds): no wake-up after
        a watch is missed, and none is made up.

        A queue's name is woken by another instance's enqueue or nack only once a take on that queue here found
        nothing after this watch (its script leaves this store's tag in the queue's waiting set): watch, then
        :meth:`take_now` or :meth:`take`, as the executor and :meth:`~podium.store.Store.take` do."""
        waiter = super().watch(name)
        cls = name.partition(":")[0]
        if cls not in self._classes and self._pubsub is not None:
            self._classes.add(cls)
            self._spawn(self._subscribe(cls))
        return waiter

    def _spawn(self, job: Any) -> None:
        task = asyncio.get_running_loop().create_task(job)
        self._subscribing.add(task)
        task.add_done_callback(self._subscribing.discard)

    async def _catch_up(self, cls: str) -> None:
        """Wake the watchers of ``cls``'s names whose Wake came while the subscription was on its way."""
        names = [name for name in self._waiters if name.partition(":")[0] == cls]
        if not names:
            return
        try:
            flags = await self._run("WOKEN", [_time(self.clock.now()), *names])
        except asyncio.CancelledError:
            raise
        except Exception:  # cannot tell: they look again
            self._notify(names)
            return
        self._notify([name for name, flag in zip(names, flags, strict=True) if int(flag)])

    async def _subscribe(self, cls: str) -> None:
        pubsub = self._pubsub
        try:
            await pubsub.subscribe(f"{self.channel}:{cls}")
        except asyncio.CancelledError:
            raise
        except Exception:  # Redis away past the driver's retries: the next watcher of the class asks again
            log.exception("subscribing to %s:%s failed", self.channel, cls)
            if self._pubsub is pubsub:
                self._classes.discard(cls)

    async def schema_version(self) -> str | None:
        return SCHEMA_VERSION if self._client is not None else None

    async def _run(self, script: str, args: Sequence[Any]) -> Any:
        calls = self._calls
        if calls is None:
            raise StoreError("the Redis store is not open (use `async with store:` or `await store.open()`)")
        return await calls.call(script, (self.prefix, *args))

    # --- apply ----------------------------------------------------------------------------------

    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        if not ops:
            return []
        now = self.clock.now()
        text = _time(now)
        args: builtins.list[Any] = [text, self._tag]
        add = args.extend
        # Encode everything first: a value JSON cannot hold fails here, before anything is written.
        for op in ops:
            if isinstance(op, Append):
                add(("H", op.subject_id, op.event, _opt(op.status), _json(op.data)))
            elif isinstance(op, Put):
                expected = "" if op.expected_version is None else str(op.expected_version)
                add(("P", op.kind, op.id, expected, _opt(op.status), _opt(op.group), _json(op.data)))
            elif isinstance(op, Enqueue):
                add(
                    (
                        "E",
                        op.queue,
                        op.id,
                        _json(op.payload),
                        str(-op.priority),
                        _time(now + op.delay_s),
                        op.lease_owner or "",
                        _time(now + op.lease_s),
                    )
                )
            elif isinstance(op, Dequeue):
                add(("Q", op.queue, op.id))
            elif isinstance(op, Ack):
                add(("A", op.lease.queue, op.lease.id, str(op.lease.token)))
            elif isinstance(op, Wake):
                add(("W", op.name))
            else:
                expected = "" if op.expected_version is None else str(op.expected_version)
                add(("D", op.kind, op.id, expected))
        reply = await self._run("APPLY", args)
        if reply[0] == "conflict":
            failed = ops[int(reply[1]) - 1]
            assert isinstance(failed, (Put, Delete))
            raise ConflictError(failed.kind, failed.id, failed.expected_version, int(reply[2]) or None)
        if reply[0] == "lost":
            lease = ops[int(reply[1]) - 1]
            assert isinstance(lease, Ack)
            raise _lost(lease.lease)
        results: builtins.list[Any] = []
        append = results.append
        for op, r in zip(ops, reply[1:], strict=True):
            if isinstance(op, Append):
                append(HistoryEntry(int(r), op.subject_id, op.event, op.status, now, op.data or {}))
            elif isinstance(op, Put):
                append(Record(op.kind, op.id, int(r[0]), op.data, op.status, op.group, float(r[1]), now))
            elif isinstance(op, Enqueue):
                if not op.lease_owner:
                    append(bool(r))
                elif r:
                    append(
                        Lease(
                            op.queue,
                            op.id,
                            op.payload or {},
                            op.priority,
                            1,
                            int(r),
                            op.lease_owner,
                            now + op.lease_s,
                            now,
                        )
                    )
                else:
                    append(None)
            elif isinstance(op, (Ack, Wake)):
                append(None)
            else:
                append(bool(r))
        if self._waiters:
            self._notify(notify_queues(ops))
        return results

    # --- records --------------------------------------------------------------------------------

    def _record_key(self, kind: str, id: str) -> str:
        return f"{self.prefix}r:{len(kind.encode())}:{kind}:{id}"

    async def get(self, kind: str, id: str) -> Record | None:
        calls = self._calls
        if calls is None:
            raise StoreError("the Redis store is not open (use `async with store:` or `await store.open()`)")
        key = self._record_key(kind, id)
        v, s, g, c, u, d = await calls.command(("HMGET", key, "v", "s", "g", "c", "u", "d"))
        if v is None:
            return None
        return Record(kind, id, int(v), _loads(d), s, g, float(c), float(u))

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Record | None]:
        """One script for all the keys (one round trip; the base class reads them one by one)."""
        if not keys:
            return []
        if len(keys) == 1:
            return [await self.get(*keys[0])]
        args: builtins.list[str] = [_time(self.clock.now())]
        for kind, id in keys:
            args += (kind, id)
        flat = await self._run("GET_MANY", args)
        out: builtins.list[Record | None] = []
        for n, (kind, id) in enumerate(keys):
            v, s, g, c, u, d = flat[6 * n : 6 * n + 6]
            out.append(None if v is None else Record(kind, id, int(v), _loads(d), s, g, float(c), float(u)))
        return out

    async def list(
        self,
        kind: str,
        *,
        status: str | Sequence[str] | None = None,
        group: str | None = None,
        after: str | None = None,
        limit: int = 100,
        descending: bool = False,
    ) -> builtins.list[Record]:
        if limit <= 0:
            return []
        statuses = status_filter(status)
        if statuses == ():
            return []
        flat = await self._run(
            "LIST",
            [
                "",
                kind,
                _opt(group),
                after or "",
                limit,
                "1" if descending else "0",
                *(statuses or ()),
            ],
        )
        return [
            Record(
                kind,
                flat[i],
                int(flat[i + 1]),
                _loads(flat[i + 6]),
                _unopt(flat[i + 2]),
                _unopt(flat[i + 3]),
                float(flat[i + 4]),
                float(flat[i + 5]),
            )
            for i in range(0, len(flat), 7)
        ]

    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        statuses = status_filter(status)
        if statuses == ():
            return 0
        return int(await self._run("COUNT", ["", kind, _opt(group), *(statuses or ())]))

    # --- queues ---------------------------------------------------------------------------------

    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        return await self.take_now_fetching(queues, owner=owner, lease_s=lease_s, limit=limit, fetch=None)

    async def take_now_fetching(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None
    ) -> builtins.list[Lease]:
        """The take and the records ``fetch`` names in one script (one round trip)."""
        if limit <= 0 or not queues:
            return []
        now = self.clock.now()
        due = _time(now + lease_s)
        fkind = fetch.kind if fetch is not None else ""
        gkind = (fetch.group_kind or "") if fetch is not None else ""
        flat = await self._run(
            "TAKE", [_time(now), owner, due, limit, self._tag, fkind, gkind, *dict.fromkeys(queues)]
        )
        expires = float(due)
        kinds = [k for k in (fkind, gkind) if k]
        step = 7 + 6 * len(kinds)
        out: builtins.list[Lease] = []
        for i in range(0, len(flat), step):
            id = flat[i + 1]
            records: builtins.list[Record | None] = []
            rid = fetch.record_id(id) if fetch is not None else id
            for n, kind in enumerate(kinds):
                v, s, g, c, u, d = flat[i + 7 + 6 * n : i + 13 + 6 * n]
                if v is None:
                    records.append(None)
                    continue
                records.append(Record(kind, rid, int(v), _loads(d), s, g, float(c), float(u)))
                rid = g
            out.append(
                Lease(
                    flat[i],
                    id,
                    _loads(flat[i + 2]),
                    -int(flat[i + 3]),
                    int(flat[i + 4]),
                    int(flat[i + 5]),
                    owner,
                    expires,
                    float(flat[i + 6]),
                    tuple(records),
                )
            )
        return out

    async def next_due(self, queues: Sequence[str]) -> float | None:
        if not queues:
            return None
        text = await self._run("NEXT_DUE", [_time(self.clock.now()), *dict.fromkeys(queues)])
        return float(text) if text is not None else None

    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        now = self.clock.now()
        due = _time(now + lease_s)
        if not await self._run("EXTEND", [_time(now), lease.queue, lease.id, str(lease.token), due]):
            raise _lost(lease)
        return lease._replace(expires_at=float(due))

    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        now = self.clock.now()
        args = [_time(now), lease.queue, lease.id, str(lease.token), _time(now + delay_s), self._tag]
        if not await self._run("NACK", args):
            raise _lost(lease)
        self._notify([lease.queue])

    async def queue_depth(self, queue: str) -> dict[str, int]:
        ready, delayed, leased = await self._run("DEPTH", [_time(self.clock.now()), queue])
        return {"ready": int(ready), "delayed": int(delayed), "leased": int(leased)}

    # --- locks ----------------------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        now = self.clock.now()
        token = await self._run("ACQUIRE", [_time(now), name, owner, _time(now + ttl_s)])
        return int(token) if token is not None else None

    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        now = self.clock.now()
        return bool(await self._run("REFRESH", [_time(now), name, owner, str(token), _time(now + ttl_s)]))

    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        return bool(await self._run("RELEASE", [_time(self.clock.now()), name, owner, str(token)]))

    # --- history --------------------------------------------------------------------------------

    async def history(
        self,
        subject_id: str | None = None,
        *,
        event: str | None = None,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> builtins.list[HistoryEntry]:
        if limit <= 0:
            return []
        flat = await self._run(
            "HISTORY",
            [
                "",
                _opt(subject_id),
                _opt(event),
                _opt(status),
                "" if since is None else "=" + _time(since),
                "" if until is None else "=" + _time(until),
                int(after_seq),
                limit,
            ],
        )
        return [
            HistoryEntry(
                int(flat[i]),
                flat[i + 1],
                flat[i + 2],
                _unopt(flat[i + 3]),
                float(flat[i + 4]),
                _loads(flat[i + 5]),
            )
            for i in range(0, len(flat), 6)
        ]


class _Pipeliner:
    """Sends the calls of many concurrent callers together: each batch is one pipeline (one round trip on
    one connection), at most :data:`PIPELINES` in flight; each script in it is still atomic on its own.
    What a round trip costs is then shared, as SQLite's group commit shares an fsync.

    A batch is written and read on a connection of its own (made by the client's pool, kept here), packed
    by :func:`_pack`: redis-py's pipeline object, pool checkout and per-argument encoding cost more CPU than
    the round trip itself when batches are small (several instances each see a part of the load)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.shas = {name: _sha1(getattr(redis_lua, name)) for name in redis_lua.__all__}
        self.pending: builtins.list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.flushers: set[asyncio.Task[None]] = set()
        self.active = 0  # flushers started and not yet past their last look at `pending`
        self.idle: builtins.list[Any] = []  # this pipeliner's connections not in use (at most PIPELINES)

    async def close(self) -> None:
        """Close the connections (after :meth:`drain`)."""
        idle, self.idle = self.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.disconnect()

    async def call(self, script: str, args: tuple[Any, ...]) -> Any:
        """Run one of :mod:`podium.store.redis_lua`'s scripts with ``args`` as ``ARGV``."""
        return await self.command(("EVALSHA", self.shas[script], 0, *args))

    async def command(self, command: tuple[Any, ...]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((command, fut))
        if self.active < PIPELINES:
            self.active += 1
            task = asyncio.get_running_loop().create_task(self._flush())
            self.flushers.add(task)
            task.add_done_callback(self.flushers.discard)
        return await fut

    async def drain(self) -> None:
        """Wait for the calls in flight (close)."""
        while self.flushers:
            await asyncio.gather(*self.flushers, return_exceptions=True)

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    replies = await self._send([command for command, _ in batch])
                except Exception as exc:  # the connection failed: every call of the batch fails
                    replies = [exc] * len(batch)
                for (_, fut), reply in zip(batch, replies, strict=True):
                    if fut.done():  # the caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        fut.set_exception(StoreError(f"Redis call failed: {reply}"))
                    else:
                        fut.set_result(reply)
        finally:
            # No await since the loop found nothing pending: a call queued from now on starts a flusher.
            self.active -= 1

    async def _send(self, commands: builtins.list[tuple[Any, ...]]) -> builtins.list[Any]:
        from redis.exceptions import NoScriptError

        replies = await self._pipeline(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted or its script cache was flushed: load them and run those again
            for name in redis_lua.__all__:
                await self.client.script_load(getattr(redis_lua, name))
            again = await self._pipeline([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return replies

    async def _pipeline(self, commands: builtins.list[tuple[Any, ...]]) -> builtins.list[Any]:
        """Send ``commands`` and read their replies (an error reply in its command's place)."""
        from redis.exceptions import ResponseError

        conn = self.idle.pop() if self.idle else self.client.connection_pool.make_connection()
        try:
            await conn.send_packed_command(_pack(commands), check_health=False)  # (re)connects if needed
            replies: builtins.list[Any] = []
            for _ in commands:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
        except BaseException:
            # A failed or interrupted exchange leaves the connection in an unknown state: it is closed, and
            # connects again at its next use.
            with contextlib.suppress(Exception):
                await conn.disconnect()
            raise
        finally:
            self.idle.append(conn)
        return replies


def _pack(commands: builtins.list[tuple[Any, ...]]) -> bytes:
    """The commands in the Redis protocol (RESP): arguments are text, bytes or numbers."""
    out = bytearray()
    for command in commands:
        out += b"*%d\r\n" % len(command)
        for arg in command:
            data = arg if type(arg) is bytes else (arg if type(arg) is str else str(arg)).encode()
            out += b"$%d\r\n%b\r\n" % (len(data), data)
    return bytes(out)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _json(value: Any) -> bytes:
    return dump_json_bytes(value) if value else b"{}"


def _lost(lease: Lease) -> LeaseLostError:
    return LeaseLostError(f"lease on {lease.queue}/{lease.id} (token {lease.token}) is no longer held")
