"""The PostgreSQL store's statements (asyncpg's ``$n`` parameters), for :mod:`podium.store.postgres`.

Every lookup of a row by its key goes through the primary key whatever plan PostgreSQL caches for the
statement (docs/scaling.md, "Plans that scanned whole tables"): single rows through :func:`_one`'s probe,
several through :func:`_by_key`'s per-key probes, and writes find their rows by the ``ctid`` read under
the row's lock.
"""

from __future__ import annotations

_RECORD_COLUMNS = "kind, id, version, status, grp, data, created_at, updated_at"
_PUT_ANY = (
    "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6, $6) ON CONFLICT (kind, id) DO UPDATE SET"
    " version = records.version + 1, status = excluded.status, grp = excluded.grp, data = excluded.data,"
    " updated_at = excluded.updated_at RETURNING version, created_at"
)
_PUT_NEW = (
    "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6, $6) ON CONFLICT (kind, id) DO NOTHING RETURNING version, created_at"
)


def _one(table: str, key: str, columns: str, lock: str = "") -> str:
    """The row of ``table`` whose primary key is ``($1, $2)``: a probe of the primary key, whatever plan
    PostgreSQL keeps for it (see :func:`_by_key`)."""
    return (
        f"SELECT {columns} FROM {table} WHERE {key} = $1 AND id BETWEEN $2 AND $2"
        f" ORDER BY {key}, id LIMIT 1{lock}"
    )


# Single-row writes find their row by the ctid of a locking probe: ``FOR UPDATE`` waits for a concurrent
# writer and returns the row's newest version, which the write then checks and changes (under the lock, as
# the plain ``WHERE key = ...`` form would have after its own wait).
_AT_RECORD = f"ctid = ({_one('records', 'kind', 'ctid', ' FOR UPDATE')})"
_AT_ITEM = f"ctid = ({_one('queue', 'queue', 'ctid', ' FOR UPDATE')})"
_PUT_VERSION = (
    "UPDATE records SET version = version + 1, status = $3, grp = $4, data = $5, updated_at = $6"
    f" WHERE {_AT_RECORD} AND version = $7 RETURNING version, created_at"
)
# A lone call's only write, committed by itself (no BEGIN/COMMIT round trips), durable or not ($8).
_PUT_VERSION_ALONE = (
    "UPDATE records SET version = version + 1, status = $3, grp = $4, data = $5, updated_at = $6"
    f" WHERE {_AT_RECORD} AND version = $7"
    " AND ($8 OR set_config('synchronous_commit', 'off', true) = 'off') RETURNING version, created_at"
)
_VERSION = _one("records", "kind", "version")
_VERSION_LOCKED = _one("records", "kind", "version", " FOR UPDATE")
_ENQUEUE = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " VALUES ($1, $2, nextval('podium_seq'), $3, $4, 0, $5, 0, '', 0, $6) ON CONFLICT (queue, id) DO NOTHING"
    " RETURNING 1"
)
_ENQUEUE_LEASED = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " VALUES ($1, $2, nextval('podium_seq'), $3, $4, 1, $5, nextval('podium_fence'), $6, 1, $7)"
    " ON CONFLICT (queue, id) DO NOTHING RETURNING token"
)
_HELD = f"{_AT_ITEM} AND leased = 1 AND token = $3 AND due_at > $4"
# The set_config() in the WHERE clause makes the take's own commit asynchronous (as a durable=False
# write): a take lost in a server crash only offers the item again.
# The items picked are updated where they lie (their ctid, stable while this statement holds their locks).
_TAKE = (
    "WITH picked AS ({picked})"
    " UPDATE queue AS q SET leased = 1, token = nextval('podium_fence'), owner = $4, due_at = $5,"
    " attempts = q.attempts + 1 FROM picked WHERE q.ctid = picked.ctid"
    " AND set_config('synchronous_commit', 'off', true) = 'off'"
    " RETURNING q.queue, q.id, q.payload, q.priority, q.attempts, q.token, q.enqueued_at, q.seq"
)
# The walk of ix_queue_order hands the items over in take order. ``due_at + 0``: the due test is a filter on
# that walk, not a condition ix_queue_due could serve; ``priority >= ...`` (always true) is a condition only
# ix_queue_order serves. Without them, once a queue held a few thousand items, a take's plan (the table never
# analyzed) read every due item of the queue through ix_queue_due and sorted them, per take. The pool's
# ``enable_sort = off`` (PostgresStore.open) rules that plan out as well; SQLite's take names its index
# (``INDEXED BY``) for the same reason.
_PICK = (
    "SELECT ctid, priority, seq FROM queue WHERE queue = {queue} AND priority >= -2147483648"
    " AND due_at + 0 <= $2"
    " ORDER BY priority DESC, seq LIMIT $3 FOR UPDATE SKIP LOCKED"
)
_TAKE_ONE = _TAKE.format(picked=_PICK.format(queue="$1"))
# Several queues: each read in its order (ix_queue_order), the first $3 of them all taken. (``queue =
# ANY(...)`` was planned as a read of every due item of the queues and a sort, per take.) Items a queue's
# probe locked but the take leaves are free again when the statement ends; a taker that skipped them
# meanwhile looks again at once (their due time has passed).
_TAKE_MANY = _TAKE.format(
    picked="SELECT p.ctid FROM unnest($1::text[]) AS n(name), LATERAL ("
    + _PICK.format(queue="n.name")
    + ") AS p ORDER BY p.priority DESC, p.seq LIMIT $3"
)


def _take_fetching(take: str, group: bool) -> str:
    """``take`` (:data:`_TAKE_ONE` or :data:`_TAKE_MANY`) returning with each item the record of kind ``$6``
    whose id is the item's id up to its last ``:`` (all of it without one) and, with ``group``, the record of
    kind ``$7`` named by that record's group (:class:`~podium.store.base.Fetch`): read by the take's own
    statement, no round trip of their own. Each record is a probe of the primary key (see :func:`_one`); a
    missing one comes back as NULLs."""
    rid = "coalesce(nullif(left(tk.id, length(tk.id) - strpos(reverse(tk.id), ':')), ''), tk.id)"
    sql = (
        f"WITH tk AS ({take}) SELECT tk.*, r.* FROM tk LEFT JOIN LATERAL ("
        f"SELECT {_RECORD_COLUMNS} FROM records WHERE kind = $6 AND id BETWEEN {rid} AND {rid}"
        " ORDER BY kind, id LIMIT 1) AS r ON true"
    )
    if group:
        sql = sql.replace("SELECT tk.*, r.*", "SELECT tk.*, r.*, g.*") + (
            f" LEFT JOIN LATERAL (SELECT {_RECORD_COLUMNS} FROM records WHERE kind = $7 AND r.grp <> ''"
            " AND id BETWEEN r.grp AND r.grp ORDER BY kind, id LIMIT 1) AS g ON true"
        )
    return sql


_TAKE_ONE_FETCH = _take_fetching(_TAKE_ONE, False)
_TAKE_MANY_FETCH = _take_fetching(_TAKE_MANY, False)
_TAKE_ONE_FETCH_GROUP = _take_fetching(_TAKE_ONE, True)
_TAKE_MANY_FETCH_GROUP = _take_fetching(_TAKE_MANY, True)
# The earliest due time of several queues: the first entry of each in ix_queue_due (``min(due_at) ...
# queue = ANY(...)`` read every item of the queues).
_NEXT_DUE = (
    "SELECT min(d.due_at) FROM unnest($1::text[]) AS n(name),"
    " LATERAL (SELECT due_at FROM queue WHERE queue = n.name ORDER BY due_at LIMIT 1) AS d"
)
_GET_ONE = _one("records", "kind", _RECORD_COLUMNS)


def _by_key(table: str, key: str, columns: str, keys: str, lock: str = "") -> str:
    """Rows of ``table`` by primary key ``(key, id)``, for the keys ``keys`` (an ``unnest`` of two text
    arrays), one primary-key probe per key, in key order.

    Written so that PostgreSQL can plan it no other way, whatever its statistics: its plans for a statement
    are made once per connection (a *generic* plan, from the sixth execution on) and kept, and those made
    while the tables are small and not yet analyzed (a new schema, the first minute before autovacuum)
    looked rows up with a sequential scan and a hash join, or through ``ix_records_group`` /
    ``ix_queue_due`` with the id as a filter (the costs tie while a table looks tiny): a scan of the whole
    table, or of every row of the kind, per statement, for as long as the connection lives. Here each key is
    a ``LATERAL`` subquery with ``LIMIT 1`` ordered by the primary key, and the id a range of one value,
    which only the primary key serves without a sort."""
    return (
        f"SELECT t.* FROM (SELECT * FROM {keys} AS k({key}, id) ORDER BY {key}, id) AS k,"
        f" LATERAL (SELECT {columns} FROM {table} WHERE {key} = k.{key} AND id BETWEEN k.id AND k.id"
        f" ORDER BY {key}, id LIMIT 1{lock}) AS t"
    )


# Group commit's array statements (pg_batch plans them): rows locked in key order, so that two instances
# locking overlapping rows wait for each other instead of deadlocking.
# The rows a batch touches, both tables in one round trip: records first, then queue items (UNION ALL runs
# its branches in order), each locked in key order. A row: (is an item, key, key, version | leased,
# created_at | due_at, 0 | token, ctid): the ctid says where the batch's writes find the row (it stays put
# while the transaction holds the row's lock).
_LOCK_ROWS = (
    "WITH r AS ("
    + _by_key(
        "records",
        "kind",
        "kind, id, version, created_at, ctid",
        "unnest($1::text[], $2::text[])",
        " FOR UPDATE",
    )
    + "), q AS ("
    + _by_key(
        "queue",
        "queue",
        "queue, id, leased, token, due_at, ctid",
        "unnest($3::text[], $4::text[])",
        " FOR UPDATE",
    )
    + ") SELECT false, kind, id, version, created_at, 0, ctid FROM r"
    " UNION ALL SELECT true, queue, id, leased, due_at, token, ctid FROM q"
)
_GET_MANY = _by_key("records", "kind", _RECORD_COLUMNS, "unnest($1::text[], $2::text[])")


def _rows(first: int, types: str) -> str:
    """``unnest`` of array parameters ``$first..``, one per type of ``types`` (comma-separated)."""
    names = types.split(",")
    return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(names)) + ")"


_RECORD_TYPES = "text,text,int,text,text,text,float8,float8"
_UPDATE_TYPES = "tid,int,text,text,text,float8,float8"
_ITEM_TYPES = "text,text,int,text,int,float8,text,float8"
_ITEM_INSERT = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " SELECT u.queue, u.id, nextval('podium_seq'), u.priority, u.payload, u.leased, u.due_at,"
    " CASE WHEN u.leased = 1 THEN nextval('podium_fence') ELSE 0 END, u.owner, u.leased, u.enqueued_at"
    " FROM {rows} AS u(queue, id, priority, payload, leased, due_at, owner, enqueued_at)"
    " ON CONFLICT (queue, id) DO NOTHING RETURNING queue, id, token"
)
_INSERT_ITEMS = _ITEM_INSERT.format(rows=_rows(1, _ITEM_TYPES))
# A batch's net writes but its history lines, in one statement (its parts touch different rows: records
# deleted or updated exist and are locked, records inserted did not exist; an item both deleted and inserted
# is inserted by _INSERT_ITEMS after it). Rows: (NULL, NULL, records inserted), and one per item inserted.
# Rows deleted or updated are found by the ctid _LOCK_ROWS read (a TID scan: no plan can scan the table).
_WRITE_ROWS = (
    "WITH rd AS (DELETE FROM records WHERE ctid = ANY($1::tid[])),"
    " ru AS (UPDATE records AS r SET version = u.version, status = u.status, grp = u.grp, data = u.data,"
    f" created_at = u.created_at, updated_at = u.updated_at FROM {_rows(2, _UPDATE_TYPES)}"
    " AS u(t, version, status, grp, data, created_at, updated_at) WHERE r.ctid = u.t),"
    f" ri AS (INSERT INTO records({_RECORD_COLUMNS}) SELECT * FROM {_rows(9, _RECORD_TYPES)}"
    " ON CONFLICT (kind, id) DO NOTHING RETURNING kind),"
    " qd AS (DELETE FROM queue WHERE ctid = ANY($17::tid[])),"
    f" qi AS ({_ITEM_INSERT.format(rows=_rows(18, _ITEM_TYPES))})"
    " SELECT NULL::text, NULL::text, count(*)::int FROM ri UNION ALL SELECT queue, id, token FROM qi"
)
# A batch's net writes and its history lines in one statement (one round trip less per batch): every write
# runs to its end before the subjects' locks are taken and any seq is drawn (the history insert reads the
# writes' counts first: a CTE runs when first read, and UNION ALL reads its branches in order), so the
# lines are still drawn last, after anything the transaction waited for. Rows: (0, NULL, NULL, records
# inserted), (1, queue, id, token) per item inserted, then (2, NULL, NULL, seq) per history line in order.
_WRITE_ROWS_HISTORY = (
    "WITH rd AS (DELETE FROM records WHERE ctid = ANY($1::tid[]) RETURNING 1),"
    " ru AS (UPDATE records AS r SET version = u.version, status = u.status, grp = u.grp, data = u.data,"
    f" created_at = u.created_at, updated_at = u.updated_at FROM {_rows(2, _UPDATE_TYPES)}"
    " AS u(t, version, status, grp, data, created_at, updated_at) WHERE r.ctid = u.t RETURNING 1),"
    f" ri AS (INSERT INTO records({_RECORD_COLUMNS}) SELECT * FROM {_rows(9, _RECORD_TYPES)}"
    " ON CONFLICT (kind, id) DO NOTHING RETURNING kind),"
    " qd AS (DELETE FROM queue WHERE ctid = ANY($17::tid[]) RETURNING 1),"
    f" qi AS ({_ITEM_INSERT.format(rows=_rows(18, _ITEM_TYPES))}),"
    " done AS (SELECT (SELECT count(*) FROM rd) + (SELECT count(*) FROM ru) + (SELECT count(*) FROM qd)"
    " + (SELECT count(*) FROM qi) AS written, (SELECT count(*) FROM ri) AS inserted),"
    " locked AS (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($31, k) FROM unnest($32::int4[]) AS k)"
    " AS l), notified AS (SELECT count(*) FROM (SELECT pg_notify($33, q) FROM unnest($34::text[]) AS q) AS n),"
    " h AS (INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM done, locked, notified,"
    " unnest($26::text[], $27::text[], $28::text[], $29::float8[], $30::text[]) AS u RETURNING seq)"
    " SELECT 0, NULL::text, NULL::text, inserted FROM done"
    " UNION ALL SELECT 1, queue, id, token::int8 FROM qi UNION ALL SELECT 2, NULL, NULL, seq::int8 FROM h"
)
# A batch written without reading its rows first (pg_batch.predict): one statement, committed by itself,
# that locks the rows the batch expects to find (records, then queue items, each in key order), checks them
# (versions; acked items held by the token, unexpired) and every write's count, and fails with
# BLIND_MISS -- so that nothing it wrote commits -- unless all hold; the store then plans the batch again
# from the rows as read (_LOCK_ROWS). Expected records: $1/$2 (keys in order), $3 (versions); queue items
# acked or dequeued: $4/$5 (keys in order), $6 (an ack's token, NULL for a dequeue), $7 (the ack's time);
# updates $8-$14 (created_at stays as stored, and comes back); inserts as in _WRITE_ROWS_HISTORY. Rows:
# (0, kind, id, NULL, created_at) per record updated, (1, queue, id, token) per item inserted, (2, NULL,
# NULL, seq) per history line, (3, queue, id) per item deleted, and one (4, ...) that forces the check.
BLIND_MISS = "podium: the rows of a batch were not as its operations expected"
_BLIND_WRITE = (
    "WITH lr AS ("
    + _by_key("records", "kind", "kind, id, version, ctid", "unnest($1::text[], $2::text[])", " FOR UPDATE")
    + "), lq AS ("
    + _by_key(
        "queue",
        "queue",
        "queue, id, leased, token, due_at, ctid",
        "unnest($4::text[], $5::text[])",
        " FOR UPDATE",
    )
    + "), ru AS (UPDATE records AS r SET version = u.version, status = u.status, grp = u.grp, data = u.data,"
    " updated_at = u.updated_at FROM lr, unnest($8::text[], $9::text[], $10::int[], $11::text[], $12::text[],"
    " $13::text[], $14::float8[]) AS u(kind, id, version, status, grp, data, updated_at)"
    " WHERE lr.kind = u.kind AND lr.id = u.id AND r.ctid = lr.ctid RETURNING r.kind, r.id, r.created_at),"
    f" ri AS (INSERT INTO records({_RECORD_COLUMNS}) SELECT * FROM {_rows(15, _RECORD_TYPES)}"
    " ON CONFLICT (kind, id) DO NOTHING RETURNING kind),"
    " qd AS (DELETE FROM queue WHERE ctid = ANY(ARRAY(SELECT ctid FROM lq)) RETURNING queue, id),"
    f" qi AS ({_ITEM_INSERT.format(rows=_rows(23, _ITEM_TYPES))}),"
    " verdict AS (SELECT (CASE WHEN"
    " (SELECT count(*) FROM lr, unnest($1::text[], $2::text[], $3::int[]) AS e(kind, id, version)"
    " WHERE lr.kind = e.kind AND lr.id = e.id AND lr.version = e.version) = cardinality($1::text[])"
    " AND (SELECT count(*) FROM ru) = cardinality($1::text[])"
    " AND (SELECT count(*) FROM lq, unnest($4::text[], $5::text[], $6::int8[], $7::float8[])"
    " AS e(queue, id, token, ts) WHERE lq.queue = e.queue AND lq.id = e.id AND e.token IS NOT NULL"
    " AND lq.leased = 1 AND lq.token = e.token AND lq.due_at > e.ts)"
    " = (SELECT count(*) FROM unnest($6::int8[]) AS t WHERE t IS NOT NULL)"
    " AND (SELECT count(*) FROM qd) = (SELECT count(*) FROM lq)"
    " AND (SELECT count(*) FROM ri) = cardinality($15::text[])"
    " AND (SELECT count(*) FROM qi) = cardinality($23::text[])"
    " AND ($40 OR set_config('synchronous_commit', 'off', true) = 'off')"
    f" THEN '1' ELSE '{BLIND_MISS}' END)::int AS ok),"
    " locked AS (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($36, k) FROM verdict,"
    " unnest($37::int4[]) AS k) AS l),"
    " notified AS (SELECT count(*) FROM (SELECT pg_notify($38, q) FROM verdict, unnest($39::text[]) AS q) AS n),"
    " h AS (INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM locked, notified,"
    " unnest($31::text[], $32::text[], $33::text[], $34::float8[], $35::text[]) AS u RETURNING seq)"
    " SELECT 0, kind, id, NULL::int8, created_at FROM ru"
    " UNION ALL SELECT 1, queue, id, token::int8, NULL FROM qi"
    " UNION ALL SELECT 2, NULL, NULL, seq::int8, NULL FROM h"
    " UNION ALL SELECT 3, queue, id, NULL, NULL FROM qd"
    " UNION ALL SELECT 4, NULL, NULL, l.count + n.count, NULL FROM locked AS l, notified AS n"
)
# History lines: the subjects' advisory locks ($6: the store's lock class, $7: the keys in order) are taken
# before any seq is drawn (the CTEs are computed before the join yields a row), and held until commit. The
# same statement sends the transaction's wake-ups ($8: the channel, $9: the names; delivered at commit, and
# dropped with a savepoint rolled back): no round trip of their own.
_LOCK_SUBJECTS = (
    "WITH locked AS (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($6, k) FROM unnest($7::int4[]) AS k)"
    " AS l), notified AS (SELECT count(*) FROM (SELECT pg_notify($8, q) FROM unnest($9::text[]) AS q) AS n)"
)
_INSERT_HISTORY = (
    f"{_LOCK_SUBJECTS} INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM locked,"
    " notified, unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[]) AS u RETURNING seq"
)
_INSERT_HISTORY_ONE = (
    f"{_LOCK_SUBJECTS} INSERT INTO history(subject_id, event, status, ts, data)"
    " SELECT $1, $2, $3, $4, $5 FROM locked, notified RETURNING seq"
)
_NOTIFY = "SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q"
_APPEND_ONE = (
    "INSERT INTO history(subject_id, event, status, ts, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq"
)
