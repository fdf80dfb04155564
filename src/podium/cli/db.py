"""``podium db``: schema versions of the SQL store -- check, upgrade, backup, restore."""

from __future__ import annotations

from pathlib import Path

import typer

from podium.errors import ConfigError
from podium.settings import CoreSettings
from podium.store import migrate, sqlite_path
from podium.store.base import SCHEMA_VERSION

__all__ = ["app"]

app = typer.Typer(
    help="Schema versions of the SQL store: check, upgrade, backup, restore.", no_args_is_help=True
)

StoreOption = typer.Option(
    None, "--store", help="Store URL (default: PODIUM_STORE_URL or sqlite:///podium-data/podium.db)."
)


def _path(store: str | None) -> Path:
    url = store or CoreSettings.load().store_url
    if not url.startswith("sqlite:"):
        raise ConfigError(f"--store {url!r}: schema versions apply to SQL stores (sqlite:///path)")
    return Path(sqlite_path(url))


@app.command()
def check(store: str | None = StoreOption) -> None:
    """Compare the store's schema version with the one this podium needs; exit 1 if they differ."""
    path = _path(store)
    found = migrate.current_version(path)
    typer.echo(f"store: {path}\nschema version: {found or 'none'}\nrequired: {SCHEMA_VERSION}")
    if found != SCHEMA_VERSION:
        typer.echo(f"out of date: run `{migrate.upgrade_command(path)}`", err=True)
        raise typer.Exit(1)
    typer.echo("up to date")


@app.command()
def upgrade(
    store: str | None = StoreOption, revision: str = typer.Option("head", help="Target revision.")
) -> None:
    """Migrate the store's schema (creates it if the file is new)."""
    path = _path(store)
    before = migrate.current_version(path)
    after = migrate.upgrade(path, revision)
    typer.echo(f"{path}: schema {before or 'none'} -> {after}")


@app.command()
def backup(
    to: Path = typer.Option(..., "--to", help="File to write the backup to."),
    store: str | None = StoreOption,
) -> None:
    """Write a consistent copy of the live store to a file (safe while the server runs)."""
    target = migrate.backup(_path(store), to)
    typer.echo(f"backup written to {target}")


@app.command()
def restore(
    from_: Path = typer.Option(..., "--from", help="Backup file to restore."),
    store: str | None = StoreOption,
) -> None:
    """Replace the store with a backup (stop the server first)."""
    path = _path(store)
    version = migrate.restore(path, from_)
    typer.echo(f"{path} restored from {from_} (schema {version})")
    if version != SCHEMA_VERSION:
        typer.echo(f"the restored schema is {version}; run `{migrate.upgrade_command(path)}`", err=True)
