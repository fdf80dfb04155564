"""``podium db``: schema versions of the SQL store -- check, upgrade, backup, restore.

SQLite stores (``sqlite:///path``) back up to a SQLite file; PostgreSQL stores (``postgresql://...``) to a
portable dump of podium's tables (see :mod:`podium.store.pg_admin`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from podium.errors import ConfigError
from podium.settings import CoreSettings
from podium.store import migrate, pg_admin, sqlite_path
from podium.store.base import SCHEMA_VERSION

__all__ = ["app"]

app = typer.Typer(
    help="Schema versions of the SQL store: check, upgrade, backup, restore.", no_args_is_help=True
)

StoreOption = typer.Option(
    None, "--store", help="Store URL (default: PODIUM_STORE_URL or sqlite:///podium-data/podium.db)."
)


def _url(store: str | None) -> str:
    url = store or CoreSettings.load().store_url
    if not url.startswith("sqlite:") and not pg_admin.is_postgres_url(url):
        raise ConfigError(
            f"--store {url!r}: schema versions apply to SQL stores (sqlite:///path, postgresql://...)"
        )
    return url


def _path(url: str) -> Path:
    return Path(sqlite_path(url))


def _pg_version(url: str) -> str | None:
    async def read() -> str | None:
        conn = await pg_admin.connect(pg_admin.parse_url(url))
        try:
            return await pg_admin.current_version(conn)
        finally:
            await conn.close()

    return pg_admin.run_sync(read())


@app.command()
def check(store: str | None = StoreOption) -> None:
    """Compare the store's schema version with the one this podium needs; exit 1 if they differ."""
    url = _url(store)
    if pg_admin.is_postgres_url(url):
        where, found, command = url, _pg_version(url), pg_admin.upgrade_command(url)
    else:
        path = _path(url)
        where, found, command = str(path), migrate.current_version(path), migrate.upgrade_command(path)
    typer.echo(f"store: {where}\nschema version: {found or 'none'}\nrequired: {SCHEMA_VERSION}")
    if found != SCHEMA_VERSION:
        typer.echo(f"out of date: run `{command}`", err=True)
        raise typer.Exit(1)
    typer.echo("up to date")


@app.command()
def upgrade(
    store: str | None = StoreOption, revision: str = typer.Option("head", help="Target revision.")
) -> None:
    """Migrate the store's schema (creates it if the file, or the PostgreSQL schema, is new)."""
    url = _url(store)
    if pg_admin.is_postgres_url(url):
        before = _pg_version(url)
        after = pg_admin.upgrade(url, revision)
        typer.echo(f"{url}: schema {before or 'none'} -> {after}")
        return
    path = _path(url)
    before = migrate.current_version(path)
    after = migrate.upgrade(path, revision)
    typer.echo(f"{path}: schema {before or 'none'} -> {after}")


@app.command()
def backup(
    to: Path = typer.Option(..., "--to", help="File to write the backup to."),
    store: str | None = StoreOption,
) -> None:
    """Write a consistent copy of the live store to a file (safe while the server runs)."""
    url = _url(store)
    if pg_admin.is_postgres_url(url):
        target = pg_admin.run_sync(pg_admin.backup(url, to))
    else:
        target = migrate.backup(_path(url), to)
    typer.echo(f"backup written to {target}")


@app.command()
def restore(
    from_: Path = typer.Option(..., "--from", help="Backup file to restore."),
    store: str | None = StoreOption,
) -> None:
    """Replace the store with a backup (stop the server first)."""
    url = _url(store)
    if pg_admin.is_postgres_url(url):
        if not from_.is_file():
            raise ConfigError(f"{from_}: no such backup file")
        version: str | None = pg_admin.run_sync(pg_admin.restore(url, from_))
        typer.echo(f"{url} restored from {from_} (schema {version})")
        return
    path = _path(url)
    version = migrate.restore(path, from_)
    typer.echo(f"{path} restored from {from_} (schema {version})")
    if version != SCHEMA_VERSION:
        typer.echo(f"the restored schema is {version}; run `{migrate.upgrade_command(path)}`", err=True)
