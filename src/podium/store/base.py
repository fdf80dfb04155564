"""The storage protocol: the small async interface every podium backend implements.

Four things, all keyed by plain strings and holding JSON-compatible data:

- **records** -- durable documents with optimistic concurrency. Each has a ``version`` that every write
  bumps; a write that names a stale ``expected_version`` fails with :class:`~podium.errors.ConflictError`
  and changes nothing. ``status`` and ``group`` are indexed columns for listing (a job's status and its
  blueprint, say).
- **queues** with leases -- ``take`` hands the next due item (highest priority, then FIFO) to one consumer
  for ``lease_s`` seconds, with a fencing ``token``; ``extend``/``ack``/``nack`` must present that token,
  and once a lease expires the item is offered again (``attempts`` counts the takes).
- **locks** with a TTL and a fencing token that strictly increases with every acquisition.
- **history** -- an append-only log of entries about a subject (job, task, workflow), with a global
  sequence number, queried by subject, event, status and time.

Atomicity lives in the backend's own primitive: :meth:`Store.apply` runs a list of operations
(:class:`Put`, :class:`Delete`, :class:`Enqueue`, :class:`Dequeue`, :class:`Ack`, :class:`Append`) as one
transaction -- all or nothing. A durable step transition ("ack this task's lease, record the job's new
state, enqueue the next task, append history") is therefore one call and one write. The single-operation
methods (:meth:`Store.put`, :meth:`Store.ack`, ...) are that same call with one operation.

Every backend must pass ``tests/conformance``. Time comes from the store's injected clock.
"""

from __future__ import annotations

import abc
import asyncio
import builtins
import contextlib
from collections.abc import Callable, Iterable, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, cast

import orjson

from podium.clock import Clock, system_clock
from podium.errors import UnstorableValueError

__all__ = [
    "SCHEMA_VERSION",
    "Ack",
    "Append",
    "Delete",
    "Dequeue",
    "Enqueue",
    "Fetch",
    "HistoryEntry",
    "Lease",
    "Op",
    "Put",
    "Record",
    "Store",
    "Wake",
]

SCHEMA_VERSION = "0002"
"""The schema revision this code expects (the Alembic head for SQL backends)."""

JSON = dict[str, Any]

EMPTY: JSON = cast(JSON, MappingProxyType({}))
"""The default payload/data of an operation: empty and read-only, so no default is ever shared mutably."""


class Record(NamedTuple):
    """A durable document. ``version`` starts at 1 and grows by one with every write."""

    kind: str
    id: str
    version: int
    data: JSON
    status: str | None = None
    group: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class Lease(NamedTuple):
    """A queue item handed to one consumer until ``expires_at``; ``token`` fences stale consumers."""

    queue: str
    id: str
    payload: JSON
    priority: int
    attempts: int
    token: int
    owner: str
    expires_at: float
    enqueued_at: float
    records: tuple[Record | None, ...] = ()
    """What the take read along with the item when asked to (:class:`Fetch`); empty otherwise."""


class Fetch(NamedTuple):
    """What :meth:`Store.take` reads along with each item it leases (its ``fetch``): the record of ``kind``
    whose id is the item's id up to its last ``:`` (all of it without one), and, with ``group_kind``, the
    record of that kind whose id is the first record's ``group``. Each lease carries them in ``records``:
    ``(record,)`` or ``(record, group record)``, ``None`` for a missing one (a group record is ``None`` too when
    the first is missing or has no group). They are read in the take's own transaction (Redis: the same
    script) or right after it, so they are as fresh as a read just after the take."""

    kind: str
    group_kind: str | None = None

    def record_id(self, item_id: str) -> str:
        """The id of the first record read for a queue item of that id."""
        return item_id.rpartition(":")[0] or item_id


class HistoryEntry(NamedTuple):
    """One append-only history line; ``seq`` is global and strictly increasing."""

    seq: int
    subject_id: str
    event: str
    status: str | None
    ts: float
    data: JSON


# --- operations for Store.apply ---------------------------------------------------------------------
# Values and operations are named tuples: immutable, and several times cheaper to build than frozen
# dataclasses (a job transition builds a dozen of them).


class Put(NamedTuple):
    """Create or replace a record.

    ``expected_version``: ``None`` writes whatever is there; ``0`` requires that the record does not exist;
    ``n`` requires the stored version to be ``n``. Result: the new :class:`Record`, whose ``data`` is the
    caller's own object (the store keeps its own copy, so changing one never changes the other).
    """

    kind: str
    id: str
    data: JSON
    expected_version: int | None = None
    status: str | None = None
    group: str | None = None


class Delete(NamedTuple):
    """Delete a record (``expected_version`` as for :class:`Put`). Result: ``True`` if it existed."""

    kind: str
    id: str
    expected_version: int | None = None


class Enqueue(NamedTuple):
    """Add an item to a queue, due after ``delay_s``. Idempotent by ``(queue, id)``: an item already in
    the queue (waiting or leased) is left as it is. Result: ``True`` if added, else ``False``.

    With ``lease_owner``, the item is created already leased to that owner for ``lease_s`` (its first
    attempt), and the result is that :class:`Lease` (or ``None`` if the item already existed): the writer
    can act on it at once without a round trip through :meth:`Store.take`, and if it dies the lease
    expires and the item is offered to others as usual. That lease's ``payload`` is the caller's own
    object, as a :class:`Put`'s result carries the caller's data.
    """

    queue: str
    id: str
    payload: JSON = EMPTY
    priority: int = 0
    delay_s: float = 0.0
    lease_owner: str | None = None
    lease_s: float = 0.0


class Dequeue(NamedTuple):
    """Remove an item from a queue whether waiting or leased (a cancel). Result: ``True`` if removed."""

    queue: str
    id: str


class Ack(NamedTuple):
    """Finish a leased item: it leaves the queue. Fails the whole batch with
    :class:`~podium.errors.LeaseLostError` if the lease is no longer held. Result: ``None``."""

    lease: Lease


class Append(NamedTuple):
    """Append a history entry. Result: the :class:`HistoryEntry`, whose ``data`` is the caller's own object
    (a new empty dict if none was given); as with :class:`Put`, the store keeps its own copy."""

    subject_id: str
    event: str
    status: str | None = None
    data: JSON = EMPTY


class Wake(NamedTuple):
    """Wake whoever waits on ``name`` (:meth:`Store.watch`) once the batch commits, on every instance that
    shares the store: the same wake-up an enqueue sends its queue's takers (Redis pub/sub, PostgreSQL
    ``NOTIFY``, in-process on SQLite and memory). Writes nothing. Result: ``None``."""

    name: str


Op = Put | Delete | Enqueue | Dequeue | Ack | Append | Wake


class Store(abc.ABC):
    """Base class of every backend. Subclasses implement the abstract methods; the rest is shared.

    Use as an async context manager, or call :meth:`open` / :meth:`close` (both idempotent).
    """

    name: str = "store"
    fetches_in_take: bool = False
    """Whether :meth:`take` reads a :class:`Fetch`'s records in its own round trip (else right after it)."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or system_clock
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._late_nacks: set[asyncio.Future[None]] = set()  # leases of cancelled takes going back

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and check the schema version. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent; the store may be opened again."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def schema_version(self) -> str | None:
        """The schema revision the store holds (``None`` for an empty SQL database)."""

    # --- the atomic primitive -------------------------------------------------------------------

    @abc.abstractmethod
    async def apply(self, *ops: Op, durable: bool = True) -> builtins.list[Any]:
        """Run ``ops`` as one transaction: all of them or none. Return one result per operation.

        Raises :class:`~podium.errors.ConflictError` (stale version) or
        :class:`~podium.errors.LeaseLostError` (ack of a lost lease) and changes nothing.

        ``durable=False`` lets a disk backend defer flushing this write until the next durable one (it is
        still atomic and visible at once, and survives a process crash; only a power cut may lose it). Use
        it only for writes that recovery can redo, such as recording who holds a lease.
        """

    # --- records --------------------------------------------------------------------------------

    @abc.abstractmethod
    async def get(self, kind: str, id: str) -> Record | None:
        """The record, or ``None``."""

    def peek(self, kind: str, id: str) -> Record | None:
        """The record, when this store knows it at once (no wait, no I/O beyond a local check), as
        :meth:`get` would return it now; ``None`` when it does not (missing, or to be read: use :meth:`get`).
        Servers answer a job's status from it without a task of their own."""
        return None

    def peek_mark(self, kind: str, id: str) -> tuple[int, float, float] | None:
        """``(version, created_at, updated_at)`` of the record :meth:`peek` would return now, or ``None``
        where it would return ``None``: whether a record seen before is unchanged, without decoding it."""
        rec = self.peek(kind, id)
        return None if rec is None else (rec.version, rec.created_at, rec.updated_at)

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> builtins.list[Record | None]:
        """The records of ``(kind, id)`` keys, in order (``None`` for a missing one). Backends where a read
        is a round trip answer in one."""
        return [await self.get(kind, id) for kind, id in keys]

    @abc.abstractmethod
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
        """Records of ``kind`` ordered by id (creation order for ULIDs), filtered, paged by ``after``."""

    @abc.abstractmethod
    async def count(
        self, kind: str, *, status: str | Sequence[str] | None = None, group: str | None = None
    ) -> int:
        """How many records of ``kind`` match."""

    async def put(
        self,
        kind: str,
        id: str,
        data: JSON,
        *,
        expected_version: int | None = None,
        status: str | None = None,
        group: str | None = None,
    ) -> Record:
        """Create or replace one record (see :class:`Put`)."""
        result: Record = (await self.apply(Put(kind, id, data, expected_version, status, group)))[0]
        return result

    async def delete(self, kind: str, id: str, *, expected_version: int | None = None) -> bool:
        """Delete one record (see :class:`Delete`)."""
        return bool((await self.apply(Delete(kind, id, expected_version)))[0])

    # --- queues ---------------------------------------------------------------------------------

    async def enqueue(
        self, queue: str, id: str, payload: JSON | None = None, *, priority: int = 0, delay_s: float = 0.0
    ) -> bool:
        """Add one item (see :class:`Enqueue`)."""
        return bool((await self.apply(Enqueue(queue, id, payload or {}, priority, delay_s)))[0])

    async def dequeue(self, queue: str, id: str) -> bool:
        """Remove one item, waiting or leased (see :class:`Dequeue`)."""
        return bool((await self.apply(Dequeue(queue, id)))[0])

    async def ack(self, lease: Lease) -> None:
        """Finish a leased item (see :class:`Ack`)."""
        await self.apply(Ack(lease))

    @abc.abstractmethod
    async def take_now(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int
    ) -> builtins.list[Lease]:
        """Lease up to ``limit`` due items from ``queues`` without waiting (highest priority, then FIFO)."""

    async def take(
        self,
        queue: str | Sequence[str],
        *,
        owner: str,
        lease_s: float,
        limit: int = 1,
        wait_s: float = 0.0,
        fetch: Fetch | None = None,
    ) -> builtins.list[Lease]:
        """Lease up to ``limit`` due items, waiting up to ``wait_s`` for one to become due (a long poll).

        Wakes on enqueues and nacks in this process, and at the time the next delayed item or expired
        lease becomes due; never busy-polls. With ``fetch``, each lease carries the records it names (see
        :class:`Fetch`).
        """
        queues = [queue] if isinstance(queue, str) else list(queue)
        deadline = self.clock.monotonic() + wait_s
        while True:
            # Register before looking, so an enqueue that commits after the look still wakes us.
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            for name in queues:
                self._waiters.setdefault(name, set()).add(waiter)
            try:
                leases = await self._take_now_safely(
                    queues, owner=owner, lease_s=lease_s, limit=limit, fetch=fetch
                )
                remaining = deadline - self.clock.monotonic()
                if leases or remaining <= 0:
                    return leases
                due = await self.next_due(queues)
                if due is not None:
                    remaining = min(remaining, max(0.0, due - self.clock.now()))
                if remaining > 0:
                    try:
                        await self.clock.wait_for(asyncio.shield(waiter), remaining)
                    except TimeoutError:
                        pass
            finally:
                for name in queues:
                    waiting = self._waiters.get(name)
                    if waiting is not None:
                        waiting.discard(waiter)
                        if not waiting:
                            del self._waiters[name]

    async def take_now_fetching(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None
    ) -> builtins.list[Lease]:
        """:meth:`take_now`, each lease carrying the records ``fetch`` names (see :class:`Fetch`). Here the
        take, then one :meth:`get_many` (two with ``group_kind``); a backend that can read them in the take
        itself overrides this (Redis: in the take's script)."""
        leases = await self.take_now(queues, owner=owner, lease_s=lease_s, limit=limit)
        if fetch is None or not leases:
            return leases
        return await self.fetch_records(leases, fetch)

    async def fetch_records(self, leases: Sequence[Lease], fetch: Fetch) -> builtins.list[Lease]:
        """``leases`` carrying the records ``fetch`` names, read now (what :meth:`take_now_fetching` adds)."""
        firsts = await self.get_many([(fetch.kind, fetch.record_id(lease.id)) for lease in leases])
        if fetch.group_kind is None:
            return [lease._replace(records=(rec,)) for lease, rec in zip(leases, firsts, strict=True)]
        groups = builtins.list(dict.fromkeys(rec.group for rec in firsts if rec is not None and rec.group))
        found = dict(zip(groups, await self.get_many([(fetch.group_kind, g) for g in groups]), strict=True))
        return [
            lease._replace(records=(rec, found.get(rec.group) if rec is not None and rec.group else None))
            for lease, rec in zip(leases, firsts, strict=True)
        ]

    async def _take_now_safely(
        self, queues: Sequence[str], *, owner: str, lease_s: float, limit: int, fetch: Fetch | None = None
    ) -> builtins.list[Lease]:
        """:meth:`take_now`, safe to cancel: a caller cancelled while the store commits the take (a long poll
        whose worker hung up, or that another path answered) would lose the leases it never saw until they
        expired; here the take finishes and whatever it leased goes straight back to its queue."""
        take = asyncio.ensure_future(
            self.take_now_fetching(queues, owner=owner, lease_s=lease_s, limit=limit, fetch=fetch)
        )
        try:
            return await asyncio.shield(take)
        except asyncio.CancelledError:
            take.add_done_callback(self._give_back_late)
            raise

    def _give_back_late(self, take: asyncio.Future[builtins.list[Lease]]) -> None:
        if take.cancelled() or take.exception() is not None or not take.result():
            return
        job = asyncio.ensure_future(self._nack_all(take.result()))
        self._late_nacks.add(job)
        job.add_done_callback(self._late_nacks.discard)

    async def _nack_all(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            with contextlib.suppress(Exception):  # taken over meanwhile: nothing to give back
                await self.nack(lease)

    def watch(self, name: str) -> asyncio.Future[None]:
        """A future resolved once ``name`` is woken after this call: a :class:`Wake` of that name, or an enqueue
        or nack on the queue of that name, committed by this instance or (Redis, PostgreSQL) by another one
        sharing the store. Register before looking at what it guards; :meth:`unwatch` it when done. A wake-up
        may be lost with a connection, so a waiter still looks again now and then."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(name, set()).add(waiter)
        return waiter

    def unwatch(self, name: str, waiter: asyncio.Future[None]) -> None:
        """Forget a :meth:`watch` that has not fired (one that fired is forgotten already)."""
        waiting = self._waiters.get(name)
        if waiting is not None:
            waiting.discard(waiter)
            if not waiting:
                del self._waiters[name]

    def _notify(self, queues: Iterable[str]) -> None:
        """Wake local waiters in :meth:`take` on these queues (backends call this after an enqueue or a
        nack commits)."""
        for name in queues:
            for waiter in self._waiters.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)

    @abc.abstractmethod
    async def next_due(self, queues: Sequence[str]) -> float | None:
        """The clock time at which the next not-yet-due item (delayed, or leased) becomes due."""

    @abc.abstractmethod
    async def extend(self, lease: Lease, lease_s: float) -> Lease:
        """Push a held lease's expiry to now + ``lease_s``; :class:`~podium.errors.LeaseLostError` if lost."""

    @abc.abstractmethod
    async def nack(self, lease: Lease, *, delay_s: float = 0.0) -> None:
        """Give a held item back, due after ``delay_s``; :class:`~podium.errors.LeaseLostError` if lost."""

    @abc.abstractmethod
    async def queue_depth(self, queue: str) -> dict[str, int]:
        """``{"ready": n, "delayed": n, "leased": n}`` for one queue."""

    # --- locks ----------------------------------------------------------------------------------

    @abc.abstractmethod
    async def acquire_lock(self, name: str, owner: str, *, ttl_s: float) -> int | None:
        """Take the lock if free or expired (or already ours); return its new fencing token, else ``None``."""

    @abc.abstractmethod
    async def refresh_lock(self, name: str, owner: str, token: int, *, ttl_s: float) -> bool:
        """Extend a lock we hold with that token; ``False`` if it was lost."""

    @abc.abstractmethod
    async def release_lock(self, name: str, owner: str, token: int) -> bool:
        """Release a lock we hold with that token; ``False`` if it was not ours any more."""

    # --- history --------------------------------------------------------------------------------

    async def append(
        self, subject_id: str, event: str, *, status: str | None = None, data: JSON | None = None
    ) -> HistoryEntry:
        """Append one history entry (see :class:`Append`)."""
        entry: HistoryEntry = (await self.apply(Append(subject_id, event, status, data or {})))[0]
        return entry

    @abc.abstractmethod
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
        """History entries in ``seq`` order, filtered; ``since``/``until`` bound ``ts`` (inclusive/exclusive)."""


ARCHIVED_EVENT = "job_archived"
"""The history event of an archived job: the SQL backends index these rows by status and time (the only
history rows they index beyond subject order: migration 0002)."""


def history_query(
    mark: Callable[[int], str],
    subject_id: str | None,
    *,
    event: str | None,
    status: str | None,
    since: float | None,
    until: float | None,
    after_seq: int,
    limit: int,
) -> tuple[str, builtins.list[Any]]:
    """The SQL backends' :meth:`Store.history` statement and its arguments; ``mark(n)`` spells the n-th
    placeholder (``?`` for SQLite, ``$n`` for PostgreSQL). Columns and operators are literals of this function."""
    where = f"seq > {mark(1)}"
    args: builtins.list[Any] = [after_seq]
    if event == ARCHIVED_EVENT:
        # spelled out, not a parameter: the planner can then use the partial indexes on archived rows
        where += f" AND event = '{ARCHIVED_EVENT}'"
        event = None
    for column, value, op in (
        ("subject_id", subject_id, "="),
        ("event", event, "="),
        ("status", status, "="),
        ("ts", since, ">="),
        ("ts", until, "<"),
    ):
        if value is not None:
            args.append(value)
            where += f" AND {column} {op} {mark(len(args))}"
    args.append(limit)
    sql = (
        f"SELECT seq, subject_id, event, status, ts, data FROM history WHERE {where} ORDER BY seq"
        f" LIMIT {mark(len(args))}"
    )
    return sql, args


def status_filter(status: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """Normalise a ``status`` argument to a tuple (or ``None`` for no filter)."""
    if status is None:
        return None
    return (status,) if isinstance(status, str) else tuple(status)


def notify_queues(ops: Sequence[Op]) -> set[str]:
    """The names whose waiters ``ops`` wake: queues they make new items available on (plain enqueues, not
    pre-leased ones) and :class:`Wake` names."""
    names: set[str] = set()
    for op in ops:
        if type(op) is Enqueue:
            if not op.lease_owner:
                names.add(op.queue)
        elif type(op) is Wake:
            names.add(op.name)
    return names


JSON_OPTIONS = orjson.OPT_NON_STR_KEYS
"""The orjson options of :func:`dump_json`: non-string keys are written as strings, as ``json.dumps`` does."""


def dump_json(value: Any) -> str:
    """Encode data as every backend holds it: JSON through orjson (several times faster than the stdlib
    encoder) with :data:`JSON_OPTIONS`. Values JSON cannot hold fail with
    :class:`~podium.errors.UnstorableValueError` (a ``TypeError``) naming where they are."""
    try:
        return orjson.dumps(value, option=JSON_OPTIONS).decode()
    except TypeError as exc:
        raise unstorable(value, exc) from None


def dump_json_bytes(value: Any) -> bytes:
    """:func:`dump_json`, as UTF-8 bytes."""
    try:
        return orjson.dumps(value, option=JSON_OPTIONS)
    except TypeError as exc:
        raise unstorable(value, exc) from None


_INT_RANGE = (-(2**63), 2**64 - 1)  # what orjson (and so every backend) writes


def unstorable(value: Any, exc: BaseException) -> UnstorableValueError:
    """The error for ``value``, which the encoder refused with ``exc``: the path of the first value in it that
    JSON as stored here cannot hold (found only now, on the failing path)."""
    stack: builtins.list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, (str, float)):
            continue
        if isinstance(item, int):
            if not _INT_RANGE[0] <= item <= _INT_RANGE[1]:
                return UnstorableValueError(
                    f"{item} is beyond the 64-bit integers a store holds", field=path or None
                )
            continue
        if isinstance(item, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in reversed(item.items()))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in reversed(list(enumerate(item))))
        else:
            return UnstorableValueError(
                f"a {type(item).__name__} is not JSON data a store can hold", field=path or None
            )
    return UnstorableValueError(str(exc))


load_json = orjson.loads
