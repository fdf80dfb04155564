"""PostgreSQL administration for podium's store: URLs, schema versions (Alembic), backup and restore.

A store URL is ``postgresql://user:password@host:port/database`` plus podium's own query options, which
are taken out before the rest reaches asyncpg:

- ``schema=NAME`` -- keep podium's tables in that PostgreSQL schema (created if missing; default: the
  server's ``search_path``, normally ``public``). Several deployments can share one database this way.
- ``pool_size=N`` -- the connection pool's size (default :data:`DEFAULT_POOL_SIZE`).

Backups are portable dumps of podium's tables (JSON lines: a header with the schema version and the
counters, then one line per row), not ``pg_dump`` archives: they need no PostgreSQL client tools and
restore into any PostgreSQL database or schema at the same schema version.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from podium.errors import ConfigError, MissingDependencyError, StoreError

__all__ = [
    "BACKUP_FORMAT",
    "DEFAULT_POOL_SIZE",
    "PostgresTarget",
    "backup",
    "connect",
    "current_version",
    "import_asyncpg",
    "is_postgres_url",
    "parse_url",
    "restore",
    "run_sync",
    "upgrade",
    "upgrade_command",
    "where",
]

T = TypeVar("T")

DEFAULT_POOL_SIZE = 10
"""Connections per store: enough for the writers and takers of one instance on a few cores; every
instance also holds one more connection for LISTEN."""

BACKUP_FORMAT = "podium-postgres-backup/1"

TABLES: dict[str, tuple[str, ...]] = {
    "records": ("kind", "id", "version", "status", "grp", "data", "created_at", "updated_at"),
    "queue": (
        "queue",
        "id",
        "seq",
        "priority",
        "payload",
        "leased",
        "due_at",
        "token",
        "owner",
        "attempts",
        "enqueued_at",
    ),
    "locks": ("name", "owner", "token", "expires_at"),
    "counters": ("name", "value"),
    "history": ("seq", "subject_id", "event", "status", "ts", "data"),
}
SEQUENCES = ("podium_fence", "podium_seq")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresTarget(NamedTuple):
    """A parsed store URL: the DSN asyncpg gets, podium's schema (or ``None``) and pool size."""

    dsn: str
    schema: str | None
    pool_size: int

    def server_settings(self) -> dict[str, str]:
        settings = {"application_name": "podium"}
        if self.schema:
            settings["search_path"] = self.schema
        return settings


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql:", "postgres:", "postgresql+asyncpg:"))


def parse_url(url: str) -> PostgresTarget:
    """Split a store URL into a :class:`PostgresTarget`; ``ConfigError`` names a bad option."""
    parts = urlsplit(url.replace("postgresql+asyncpg:", "postgresql:", 1))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    schema = query.pop("schema", None) or None
    if schema is not None and not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"store URL: schema={schema!r} is not a plain PostgreSQL identifier")
    size_text = query.pop("pool_size", str(DEFAULT_POOL_SIZE))
    try:
        pool_size = int(size_text)
    except ValueError:
        pool_size = 0
    if pool_size < 2:
        raise ConfigError(f"store URL: pool_size={size_text!r} must be a whole number of at least 2")
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), parts.fragment))
    return PostgresTarget(dsn, schema, pool_size)


def import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("asyncpg", "postgres") from exc
    return asyncpg


async def connect(target: PostgresTarget, *, create_schema: bool = False) -> Any:
    """One connection with podium's ``search_path`` (creating the schema first if asked)."""
    asyncpg = import_asyncpg()
    try:
        if create_schema and target.schema:
            conn = await asyncpg.connect(target.dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{target.schema}"')
            except asyncpg.UniqueViolationError:
                pass  # another instance created it at the same moment (IF NOT EXISTS does not cover a race)
            finally:
                await conn.close()
        return await asyncpg.connect(target.dsn, server_settings=target.server_settings())
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(f"cannot connect to PostgreSQL at {where(target)}: {exc}") from exc


def where(target: PostgresTarget) -> str:
    """``host:port/database`` of a target, without user or password (for messages and logs)."""
    parts = urlsplit(target.dsn)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"


async def current_version(conn: Any) -> str | None:
    """The Alembic revision in the connection's schema (``None`` if podium's schema is not there)."""
    if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
        return None
    found = await conn.fetchval("SELECT version_num FROM alembic_version")
    return str(found) if found is not None else None


async def has_tables(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass('records') IS NOT NULL"))


def upgrade_command(url: str) -> str:
    return f"podium db upgrade --store {url}"


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code (the CLI, Alembic's thread)."""
    return asyncio.run(coro)


def upgrade(url: str, revision: str = "head") -> str:
    """Migrate the PostgreSQL store at ``url`` to ``revision`` with Alembic; return its version after.

    Synchronous (Alembic's API): from async code call it in a thread (``asyncio.to_thread``).
    """
    from alembic import command

    from podium.store.migrate import _alembic_config

    target = parse_url(url)

    async def prepare() -> None:
        conn = await connect(target, create_schema=True)
        await conn.close()

    run_sync(prepare())
    cfg = _alembic_config(target.dsn.replace("postgresql:", "postgresql+asyncpg:", 1))
    cfg.attributes["connect_args"] = {"server_settings": target.server_settings()}  # type: ignore[attr-defined]
    command.upgrade(cfg, revision)  # type: ignore[arg-type]

    async def read() -> str | None:
        conn = await connect(target)
        try:
            return await current_version(conn)
        finally:
            await conn.close()

    return run_sync(read()) or ""


async def backup(url: str, target_file: str | Path) -> Path:
    """Write a consistent dump of podium's tables at ``url`` to ``target_file`` (safe while serving)."""
    target = parse_url(url)
    path = Path(target_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await connect(target)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            version = await current_version(conn)
            if version is None:
                raise ConfigError(f"{url}: no podium schema there to back up")
            counters = {name: await conn.fetchval(f"SELECT last_value FROM {name}") for name in SEQUENCES}
            # The CLI runs this with nothing else on its loop: plain file writes are fine here.
            with path.open("wb") as out:  # noqa: ASYNC230
                header = {"format": BACKUP_FORMAT, "schema_version": version, "sequences": counters}
                out.write(orjson.dumps(header) + b"\n")
                for table, columns in TABLES.items():
                    async for row in conn.cursor(f"SELECT {', '.join(columns)} FROM {table}"):
                        out.write(orjson.dumps([table, list(row.values())]) + b"\n")
    finally:
        await conn.close()
    return path


async def restore(url: str, source: str | Path) -> str:
    """Replace podium's tables at ``url`` with the dump ``source``; return the restored schema version.

    The target is migrated to the dump's version first if it is empty; one transaction, so a failed
    restore changes nothing. Stop the servers using the store first.
    """
    source = Path(source)
    with source.open("rb") as handle:  # noqa: ASYNC230 - the CLI's own loop, nothing else on it
        try:
            header = orjson.loads(handle.readline())
        except orjson.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != BACKUP_FORMAT:
            raise ConfigError(f"{source}: not a podium PostgreSQL backup (line 1 has no {BACKUP_FORMAT!r})")
        rows: dict[str, list[tuple[Any, ...]]] = {table: [] for table in TABLES}
        for number, line in enumerate(handle, start=2):
            try:
                table, values = orjson.loads(line)
                rows[table].append(tuple(values))
            except (orjson.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{source}: line {number} is not a row of a podium table ({exc})") from exc
    version = str(header["schema_version"])
    target = parse_url(url)
    conn = await connect(target, create_schema=True)
    try:
        found = await current_version(conn)
        if found is None:
            await conn.close()
            await asyncio.to_thread(upgrade, url, version)
            conn = await connect(target)
            found = await current_version(conn)
        if found != version:
            raise ConfigError(
                f"{source} holds schema {version} but {url} is at {found}: restore into an empty schema"
            )
        async with conn.transaction():
            await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
            for table, columns in TABLES.items():
                if rows[table]:
                    await conn.copy_records_to_table(table, records=rows[table], columns=list(columns))
            for name, value in header.get("sequences", {}).items():
                if name in SEQUENCES:
                    await conn.execute("SELECT setval($1::regclass, $2)", name, max(int(value), 1))
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('history', 'seq'),"
                " coalesce((SELECT max(seq) FROM history), 0) + 1, false)"
            )
    finally:
        await conn.close()
    return version
