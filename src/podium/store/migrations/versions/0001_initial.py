"""Initial schema: records, queue, locks, counters, history.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "records",
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(64)),
        sa.Column("grp", sa.String(128)),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_records_status", "records", ["kind", "status", "id"])
    op.create_index("ix_records_group", "records", ["kind", "grp", "id"])
    op.create_table(
        "queue",
        sa.Column("queue", sa.String(128), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("leased", sa.Integer, nullable=False),
        sa.Column("due_at", sa.Float, nullable=False),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("enqueued_at", sa.Float, nullable=False),
    )
    op.create_index("ix_queue_order", "queue", ["queue", sa.text("priority DESC"), "seq"])
    op.create_index("ix_queue_due", "queue", ["queue", "due_at"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("token", sa.Integer, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("value", sa.Integer, nullable=False),
    )
    op.create_table(
        "history",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("subject_id", sa.String(128), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("status", sa.String(64)),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_history_subject", "history", ["subject_id", "seq"])
    op.create_index("ix_history_status", "history", ["status", "ts"])
    op.create_index("ix_history_ts", "history", ["ts"])
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL hands out fencing tokens and queue order from sequences, so concurrent writers never
        # queue up on one counters row (SQLite's writers are serialised anyway and use `counters`).
        op.execute("CREATE SEQUENCE podium_fence")
        op.execute("CREATE SEQUENCE podium_seq")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS podium_fence")
        op.execute("DROP SEQUENCE IF EXISTS podium_seq")
    for name in ("history", "counters", "locks", "queue", "records"):
        op.drop_table(name)
