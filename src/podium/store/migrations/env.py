"""Alembic environment: migrates the database given in ``config.attributes['url']`` (or sqlalchemy.url).

SQLite runs on the standard library driver; PostgreSQL on asyncpg through SQLAlchemy's async engine
(``config.attributes['connect_args']`` carries podium's ``search_path``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import create_engine

from podium.store.schema import metadata

config = context.config
url = str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def run_migrations(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url, connect_args=config.attributes.get("connect_args", {}))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if url.startswith("postgresql+asyncpg:"):
    asyncio.run(run_async())
else:
    engine = create_engine(url)
    with engine.begin() as connection:
        run_migrations(connection)
    engine.dispose()
