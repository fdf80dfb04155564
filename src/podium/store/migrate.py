"""Schema versions of the SQL store, through Alembic: check, upgrade, backup, restore.

The ``podium db`` commands are thin wrappers over these functions.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from podium.errors import ConfigError

__all__ = [
    "backup",
    "create_or_read",
    "current_version",
    "head_version",
    "restore",
    "upgrade",
    "upgrade_command",
]

_MIGRATIONS = Path(__file__).with_name("migrations")


def _alembic_config(sa_url: str) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["url"] = sa_url
    return cfg


def head_version() -> str:
    """The newest revision among the migration scripts (must equal ``SCHEMA_VERSION``)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config("sqlite://")).get_current_head()  # type: ignore[arg-type]
    return str(head)


def upgrade_command(path: str | Path) -> str:
    """The command line that migrates the SQLite store at ``path``."""
    return f"podium db upgrade --store sqlite:///{path}"


def current_version(path: str | Path) -> str | None:
    """The revision recorded in the SQLite file (``None`` if it has no podium schema yet)."""
    if not Path(path).exists():
        return None
    conn = sqlite3.connect(str(path))
    try:
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        if row is None:
            return None
        found = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return str(found[0]) if found else None
    finally:
        conn.close()


@contextlib.contextmanager
def _migration_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.migrate-lock`` (a file beside the store): processes starting
    together on a new file migrate it one at a time. A sidecar, not the database file: closing another
    descriptor of the database would drop the POSIX locks SQLite holds on it in this process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not a POSIX system: no lock
        yield
        return
    lock = Path(f"{path}.migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _upgrade(path: str | Path, revision: str) -> str:
    from alembic import command

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(_alembic_config(f"sqlite:///{path}"), revision)  # type: ignore[arg-type]
    return current_version(path) or ""


def upgrade(path: str | Path, revision: str = "head") -> str:
    """Migrate the SQLite store at ``path`` to ``revision``; return the version it is at afterwards.
    Concurrent calls (several processes starting on one new file) run one after the other."""
    with _migration_lock(path):
        return _upgrade(path, revision)


def create_or_read(path: str | Path, has_other_tables: Callable[[], bool]) -> str | None:
    """The first open of a store file: its version if another process created the schema meanwhile, else
    create it (``None`` if ``has_other_tables()`` says the file holds tables but no podium schema: the caller
    refuses it). Under the migration lock, so processes starting together create it once."""
    with _migration_lock(path):
        found = current_version(path)
        if found is not None:
            return found
        if Path(path).exists() and Path(path).stat().st_size > 0 and has_other_tables():
            return None
        return _upgrade(path, "head")


def backup(path: str | Path, target: str | Path) -> Path:
    """Copy a consistent snapshot of the live SQLite store to ``target`` (SQLite's online backup)."""
    if not Path(path).exists():
        raise ConfigError(f"{path}: no such store file")
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(str(path)), sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return target


def restore(path: str | Path, source: str | Path) -> str | None:
    """Replace the SQLite store at ``path`` with the backup ``source``; return the restored version.

    The backup must hold a podium schema; the store must not be in use (stop the server first).
    """
    source = Path(source)
    version = current_version(source)
    if version is None:
        raise ConfigError(f"{source}: not a podium store backup (no schema version in it)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".restore")
    shutil.copyfile(source, tmp)
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    tmp.replace(path)
    return version
