"""History's status and time indexes cover archived jobs only (partial indexes).

Every history row used to enter three indexes; the engine's only queries across subjects are archived-job
listings (``event='job_archived'``, by status and archive time), so those two indexes now hold only
``job_archived`` rows: a job writes about seven history rows and one of them is indexed by status and time,
which halves the cost of a history insert and the WAL pages a job writes (``bench_server``: see
docs/server.md). :meth:`Store.history` with ``status``/``since``/``until`` and no ``event='job_archived'``
scans by ``seq`` (still correct, no longer indexed).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ARCHIVED = sa.text("event = 'job_archived'")


def upgrade() -> None:
    op.drop_index("ix_history_status", table_name="history")
    op.drop_index("ix_history_ts", table_name="history")
    op.create_index(
        "ix_history_archived_status",
        "history",
        ["status", "ts"],
        sqlite_where=_ARCHIVED,
        postgresql_where=_ARCHIVED,
    )
    op.create_index(
        "ix_history_archived_ts", "history", ["ts"], sqlite_where=_ARCHIVED, postgresql_where=_ARCHIVED
    )


def downgrade() -> None:
    op.drop_index("ix_history_archived_ts", table_name="history")
    op.drop_index("ix_history_archived_status", table_name="history")
    op.create_index("ix_history_status", "history", ["status", "ts"])
    op.create_index("ix_history_ts", "history", ["ts"])
