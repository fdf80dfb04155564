"""The SQL schema, as SQLAlchemy Core metadata: the one source for Alembic migrations and SQL backends."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text, text

from podium.store.base import ARCHIVED_EVENT

__all__ = ["counters", "history", "locks", "metadata", "queue", "records"]

metadata = MetaData()

records = Table(
    "records",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("status", String(64)),
    Column("grp", String(128)),
    Column("data", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_records_status", "kind", "status", "id"),
    Index("ix_records_group", "kind", "grp", "id"),
)

queue = Table(
    "queue",
    metadata,
    Column("queue", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("payload", Text, nullable=False),
    Column("leased", Integer, nullable=False),
    Column("due_at", Float, nullable=False),
    Column("token", Integer, nullable=False),
    Column("owner", String(128), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("enqueued_at", Float, nullable=False),
    Index("ix_queue_due", "queue", "due_at"),
)
Index("ix_queue_order", queue.c.queue, queue.c.priority.desc(), queue.c.seq)

locks = Table(
    "locks",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("token", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)

_ARCHIVED_ROWS = f"event = '{ARCHIVED_EVENT}'"
"""The rows the archive indexes hold (the engine's archived-job history entries)."""

history = Table(
    "history",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("subject_id", String(128), nullable=False),
    Column("event", String(64), nullable=False),
    Column("status", String(64)),
    Column("ts", Float, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_history_subject", "subject_id", "seq"),
    # archived-job listings (by final status, by archive time): only those rows are indexed (migration 0002)
    Index(
        "ix_history_archived_status",
        "status",
        "ts",
        sqlite_where=text(_ARCHIVED_ROWS),
        postgresql_where=text(_ARCHIVED_ROWS),
    ),
    Index(
        "ix_history_archived_ts",
        "ts",
        sqlite_where=text(_ARCHIVED_ROWS),
        postgresql_where=text(_ARCHIVED_ROWS),
    ),
)
