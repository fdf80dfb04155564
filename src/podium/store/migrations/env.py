"""Alembic environment: migrates the database given in ``config.attributes['url']`` (or sqlalchemy.url)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from podium.store.schema import metadata

config = context.config
url = str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))

engine = create_engine(url)
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
