"""The SQL text of the PostgreSQL store (:mod:`podium.store.postgres`): its statements, and the group commit's
array statements (:mod:`podium.store.pg_batch` plans what they write). Every value is a parameter; the
tables are those of :mod:`podium.store.schema`."""

from __future__ import annotations

__all__ = [
    "APPEND_ONE",
    "ENQUEUE",
    "ENQUEUE_LEASED",
    "HELD",
    "INSERT_HISTORY",
    "INSERT_HISTORY_ONE",
    "INSERT_ITEMS",
    "ITEM_STATES",
    "KEYS",
    "LOCK_ROWS",
    "NOTIFY",
    "PUT_ANY",
    "PUT_NEW",
    "PUT_VERSION",
    "RECORD_COLUMNS",
    "TAKE_MANY",
    "TAKE_ONE",
    "VERSION",
    "WRITE_ALL",
    "WRITE_GUESSED",
    "WRITE_ROWS",
]

PUT_ANY = (
    "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6, $6) ON CONFLICT (kind, id) DO UPDATE SET"
    " version = records.version + 1, status = excluded.status, grp = excluded.grp, data = excluded.data,"
    " updated_at = excluded.updated_at RETURNING version, created_at"
)
PUT_NEW = (
    "INSERT INTO records(kind, id, version, status, grp, data, created_at, updated_at)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6, $6) ON CONFLICT (kind, id) DO NOTHING RETURNING version, created_at"
)
PUT_VERSION = (
    "UPDATE records SET version = version + 1, status = $3, grp = $4, data = $5, updated_at = $6"
    " WHERE kind = $1 AND id = $2 AND version = $7 RETURNING version, created_at"
)
VERSION = "SELECT version FROM records WHERE kind = $1 AND id = $2"
ENQUEUE = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " VALUES ($1, $2, nextval('podium_seq'), $3, $4, 0, $5, 0, '', 0, $6) ON CONFLICT (queue, id) DO NOTHING"
    " RETURNING 1"
)
ENQUEUE_LEASED = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " VALUES ($1, $2, nextval('podium_seq'), $3, $4, 1, $5, nextval('podium_fence'), $6, 1, $7)"
    " ON CONFLICT (queue, id) DO NOTHING RETURNING token"
)
HELD = "queue = $1 AND id = $2 AND leased = 1 AND token = $3 AND due_at > $4"
# The set_config() in the WHERE clause makes the take's own commit asynchronous (as a durable=False
# write): a take lost in a server crash only offers the item again.
_TAKE = (
    "WITH picked AS (SELECT queue, id FROM queue WHERE queue = {queues} AND due_at <= $2"
    " ORDER BY priority DESC, seq LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " UPDATE queue AS q SET leased = 1, token = nextval('podium_fence'), owner = $4, due_at = $5,"
    " attempts = q.attempts + 1 FROM picked WHERE q.queue = picked.queue AND q.id = picked.id"
    " AND set_config('synchronous_commit', 'off', true) = 'off'"
    " RETURNING q.queue, q.id, q.payload, q.priority, q.attempts, q.token, q.enqueued_at, q.seq"
)
TAKE_ONE = _TAKE.format(queues="$1")
TAKE_MANY = _TAKE.format(queues="ANY($1::text[])")
RECORD_COLUMNS = "kind, id, version, status, grp, data, created_at, updated_at"
# Group commit's array statements (pg_batch plans them): rows locked in key order, so that two instances
# locking overlapping rows wait for each other instead of deadlocking.
KEYS = "(SELECT * FROM unnest($1::text[], $2::text[]))"
# The rows a batch touches, both tables in one round trip: records first, then queue items (UNION ALL runs
# its branches in order), each locked in key order. A row: (is an item, key, key, version | leased,
# created_at | due_at, 0 | token).
LOCK_ROWS = (
    "WITH r AS (SELECT kind, id, version, created_at FROM records WHERE (kind, id) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[])) ORDER BY kind, id FOR UPDATE),"
    " q AS (SELECT queue, id, leased, token, due_at FROM queue WHERE (queue, id) IN"
    " (SELECT * FROM unnest($3::text[], $4::text[])) ORDER BY queue, id FOR UPDATE)"
    " SELECT false, kind, id, version, created_at, 0 FROM r"
    " UNION ALL SELECT true, queue, id, leased, due_at, token FROM q"
)


def _rows(first: int, types: str) -> str:
    """``unnest`` of array parameters ``$first..``, one per type of ``types`` (comma-separated)."""
    names = types.split(",")
    return "unnest(" + ", ".join(f"${first + i}::{t}[]" for i, t in enumerate(names)) + ")"


_RECORD_TYPES = "text,text,int,text,text,text,float8,float8"
_ITEM_TYPES = "text,text,int,text,int,float8,text,float8"
_ITEM_INSERT = (
    "INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts, enqueued_at)"
    " SELECT u.queue, u.id, nextval('podium_seq'), u.priority, u.payload, u.leased, u.due_at,"
    " CASE WHEN u.leased = 1 THEN nextval('podium_fence') ELSE 0 END, u.owner, u.leased, u.enqueued_at"
    " FROM {rows} AS u(queue, id, priority, payload, leased, due_at, owner, enqueued_at)"
    " ON CONFLICT (queue, id) DO NOTHING RETURNING queue, id, token"
)
INSERT_ITEMS = _ITEM_INSERT.format(rows=_rows(1, _ITEM_TYPES))
# A batch's net writes but its history lines, in one statement (its parts touch different rows: records
# deleted or updated exist and are locked, records inserted did not exist; an item both deleted and inserted
# is inserted by INSERT_ITEMS after it). Rows: (NULL, NULL, records inserted), and one per item inserted.
_WRITES = (
    f"rd AS (DELETE FROM records WHERE (kind, id) IN (SELECT * FROM {_rows(1, 'text,text')})),"
    " ru AS (UPDATE records AS r SET version = u.version, status = u.status, grp = u.grp, data = u.data,"
    f" created_at = coalesce(u.created_at, r.created_at), updated_at = u.updated_at FROM {_rows(3, _RECORD_TYPES)}"
    " AS u(kind, id, version, status, grp, data, created_at, updated_at) WHERE r.kind = u.kind AND r.id = u.id),"
    f" ri AS (INSERT INTO records({RECORD_COLUMNS}) SELECT * FROM {_rows(11, _RECORD_TYPES)}"
    " ON CONFLICT (kind, id) DO NOTHING RETURNING kind),"
    f" qd AS (DELETE FROM queue WHERE (queue, id) IN (SELECT * FROM {_rows(19, 'text,text')})),"
    f" qi AS ({_ITEM_INSERT.format(rows=_rows(21, _ITEM_TYPES))})"
)
WRITE_ROWS = (
    f"WITH {_WRITES} SELECT NULL::text, NULL::text, count(*)::int FROM ri"
    " UNION ALL SELECT queue, id, token FROM qi"
)


def _lock_subjects(first: int) -> str:
    """History lines' CTEs: the subjects' advisory locks (``$first``: the store's lock class, ``$first+1``: the
    keys in order) are taken before any seq is drawn (the CTEs are computed before the join yields a row),
    and held until commit. The same statement sends the transaction's wake-ups (``$first+2``: the channel,
    ``$first+3``: the names; delivered at commit, and dropped with a savepoint rolled back): no round trip
    of their own."""
    return (
        f"locked AS (SELECT count(*) FROM (SELECT pg_advisory_xact_lock(${first}, k)"
        f" FROM unnest(${first + 1}::int4[]) AS k) AS l), notified AS (SELECT count(*) FROM"
        f" (SELECT pg_notify(${first + 2}, q) FROM unnest(${first + 3}::text[]) AS q) AS n)"
    )


INSERT_HISTORY = (
    f"WITH {_lock_subjects(6)} INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM locked,"
    " notified, unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[]) AS u RETURNING seq"
)
INSERT_HISTORY_ONE = (
    f"WITH {_lock_subjects(6)} INSERT INTO history(subject_id, event, status, ts, data)"
    " SELECT $1, $2, $3, $4, $5 FROM locked, notified RETURNING seq"
)
# A planned batch's writes and its history lines in one round trip: _WRITES ($1-$28), then the lines
# ($29-$33) under the subjects' locks ($34-$35) and the wake-ups ($36-$37). The rows the batch locked
# (LOCK_ROWS) were locked by the statement before, so the only waits left are the subjects' locks, as in
# INSERT_HISTORY. Rows: (0, NULL, NULL, records inserted), (1, queue, id, token) per item inserted, (2,
# NULL, NULL, seq) per line.
_HISTORY_CTE = (
    "h AS (INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM locked, notified,"
    " unnest($29::text[], $30::text[], $31::text[], $32::float8[], $33::text[]) AS u RETURNING seq)"
)
WRITE_ALL = (
    f"WITH {_lock_subjects(34)}, {_WRITES}, {_HISTORY_CTE}"
    " SELECT 0, NULL::text, NULL::text, count(*)::int8 FROM ri UNION ALL SELECT 1, queue, id, token::int8 FROM qi"
    " UNION ALL SELECT 2, NULL, NULL, seq::int8 FROM h"
)
# A batch planned on the rows its calls expect (pg_batch.guess_rows), in one statement: the rows it touches
# locked in key order ($38-$41: record keys, item keys) and checked (`ok`: records at versions $42, 0 for
# none; items $43: 0 none, 1 one, 2 one leased with token $44 past $45), then, only if they are as guessed,
# WRITE_ALL's writes, lines and wake-ups, and synchronous_commit off for the transaction ($46). UNION ALL
# runs its branches in order, so the check comes first; the updates and deletes (run after the main
# query) find their rows locked. Without ON CONFLICT, an insert another instance won fails the statement.
# So it writes all or nothing, and can run as a transaction of its own (no BEGIN, no COMMIT). Rows: (6, ok),
# (3, kind, id, version, created_at) per record read, then WRITE_ALL's.
_OK = "(SELECT ok FROM ok)"
WRITE_GUESSED = (
    "WITH lr AS (SELECT kind, id, version, created_at FROM records WHERE (kind, id) IN"
    " (SELECT * FROM unnest($38::text[], $39::text[])) ORDER BY kind, id FOR UPDATE),"
    " lq AS (SELECT queue, id, leased, token, due_at FROM queue WHERE (queue, id) IN"
    " (SELECT * FROM unnest($40::text[], $41::text[])) ORDER BY queue, id FOR UPDATE),"
    " ok AS (SELECT NOT EXISTS (SELECT 1 FROM unnest($38::text[], $39::text[], $42::int8[]) AS e(kind, id, v)"
    " LEFT JOIN lr ON lr.kind = e.kind AND lr.id = e.id WHERE coalesce(lr.version, 0) <> e.v) AND NOT EXISTS"
    " (SELECT 1 FROM unnest($40::text[], $41::text[], $43::int4[], $44::int8[], $45::float8[]) AS e(queue, id,"
    " state, token, now) LEFT JOIN lq ON lq.queue = e.queue AND lq.id = e.id WHERE CASE e.state"
    " WHEN 0 THEN lq.id IS NOT NULL WHEN 1 THEN lq.id IS NULL ELSE lq.id IS NULL OR lq.leased <> 1"
    " OR lq.token <> e.token OR lq.due_at <= e.now END) AS ok),"
    f" locked AS (SELECT count(*) FROM (SELECT pg_advisory_xact_lock($34, k) FROM unnest($35::int4[]) AS k"
    f" WHERE {_OK}) AS l), notified AS (SELECT count(*) AS n FROM (SELECT pg_notify($36, q)"
    f" FROM unnest($37::text[]) AS q WHERE {_OK}) AS n),"
    f" sc AS (SELECT set_config('synchronous_commit', 'off', true) AS s WHERE $46 AND {_OK}),"
    f" rd AS (DELETE FROM records WHERE {_OK} AND (kind, id) IN (SELECT * FROM {_rows(1, 'text,text')})),"
    " ru AS (UPDATE records AS r SET version = u.version, status = u.status, grp = u.grp, data = u.data,"
    f" created_at = coalesce(u.created_at, r.created_at), updated_at = u.updated_at FROM {_rows(3, _RECORD_TYPES)}"
    " AS u(kind, id, version, status, grp, data, created_at, updated_at)"
    f" WHERE {_OK} AND r.kind = u.kind AND r.id = u.id),"
    f" ri AS (INSERT INTO records({RECORD_COLUMNS}) SELECT * FROM {_rows(11, _RECORD_TYPES)} AS u"
    f" WHERE {_OK} RETURNING kind),"
    f" qd AS (DELETE FROM queue WHERE {_OK} AND (queue, id) IN (SELECT * FROM {_rows(19, 'text,text')})),"
    " qi AS (INSERT INTO queue(queue, id, seq, priority, payload, leased, due_at, token, owner, attempts,"
    " enqueued_at) SELECT u.queue, u.id, nextval('podium_seq'), u.priority, u.payload, u.leased, u.due_at,"
    " CASE WHEN u.leased = 1 THEN nextval('podium_fence') ELSE 0 END, u.owner, u.leased, u.enqueued_at"
    f" FROM {_rows(21, _ITEM_TYPES)} AS u(queue, id, priority, payload, leased, due_at, owner, enqueued_at)"
    f" WHERE {_OK} RETURNING queue, id, token),"
    " h AS (INSERT INTO history(subject_id, event, status, ts, data) SELECT u.* FROM locked, notified,"
    f" unnest($29::text[], $30::text[], $31::text[], $32::float8[], $33::text[]) AS u WHERE {_OK} RETURNING seq)"
    " SELECT 6, NULL::text, NULL::text, ok::int::int8, NULL::float8 FROM ok"
    " UNION ALL SELECT 3, kind, id, version::int8, created_at FROM lr"
    " UNION ALL SELECT 0, NULL, NULL, count(*)::int8, NULL FROM ri"
    " UNION ALL SELECT 1, queue, id, token::int8, NULL FROM qi UNION ALL SELECT 2, NULL, NULL, seq::int8, NULL FROM h"
    " UNION ALL SELECT 5, NULL, NULL, n, NULL FROM notified UNION ALL SELECT 7, s, NULL, 0, NULL FROM sc"
)
ITEM_STATES = {"absent": 0, "present": 1, "held": 2}
NOTIFY = "SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q"
APPEND_ONE = (
    "INSERT INTO history(subject_id, event, status, ts, data) VALUES ($1, $2, $3, $4, $5) RETURNING seq"
)
