"""``podium serve``: the server (client API, RXON worker API, public routes) with blueprints from a folder.

Settings come from :class:`podium.server.ServerSettings` (environment: ``API_HOST``, ``API_PORT``,
``CLIENT_TOKEN``, ``CLIENTS_CONFIG_PATH``, ``GLOBAL_WORKER_TOKEN``, ``WORKERS_CONFIG_PATH``,
``ENABLE_CLIENT_API``, ...; files ``server.settings.toml``/``settings.toml``); options override them.
A malformed ``clients.toml``/``workers.toml``/``schedules.toml`` stops the start with the file and the line.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import typer

from podium.errors import ConfigError, MissingDependencyError

__all__ = ["command", "run_server"]

log = logging.getLogger("podium.server")


def _storage(url: str) -> Any:
    """The engine's storage for a store URL (``memory://``, ``sqlite:///path`` or ``redis://host:port/db``),
    as ``open_store`` reads it."""
    from podium.engine.storage import MemoryStorage, SQLiteStorage
    from podium.store import sqlite_path, sqlite_synchronous

    if url.startswith(("redis:", "rediss:")) or "history=" in url:
        from podium.store import open_store

        try:
            return open_store(url)  # RedisStorage's store, or a split one (history=<store URL>)
        except ValueError as exc:
            raise ConfigError(f"--storage: {exc}") from None
    if url in ("memory", "memory://"):
        return MemoryStorage()
    if url.startswith("sqlite:"):
        try:
            synchronous = sqlite_synchronous(url)
        except ValueError as exc:
            raise ConfigError(f"--storage: {exc}") from None
        return SQLiteStorage(sqlite_path(url), synchronous=synchronous)
    if url.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteStorage(url)
    if url.startswith(("postgresql:", "postgres:")):
        from podium.store import open_store

        return open_store(url)
    raise ConfigError(
        f"--storage: unsupported store {url!r} (memory://, sqlite:///path/to/file.db, postgresql://..., redis://host:port/db)"
    )


async def run_server(
    *,
    blueprints: Path | None,
    storage: str,
    overrides: dict[str, Any],
    settings_dir: Path | None = None,
    tune_gc: bool = False,
) -> None:
    """Build the engine and serve until SIGINT/SIGTERM. ``tune_gc`` (``podium serve``, which owns its
    process): tune the garbage collector once serving (see :func:`_tune_gc`), and fsync SQLite's WAL in a
    helper process (:func:`podium.store.sqlite_sync.sync_in_helper_process`)."""
    from podium.engine import Config, OrchestratorEngine
    from podium.server import ServerSettings, start_server

    settings = ServerSettings.load(
        settings_dir=settings_dir, **{k: v for k, v in overrides.items() if v is not None}
    )
    if tune_gc:  # this process is the server: the WAL's fsyncs go to a helper process (SQLite, FULL)
        from podium.store.sqlite_sync import sync_in_helper_process

        sync_in_helper_process(True)
    store = _storage(storage)
    # Open (and so schema-check) the store before anything listens: a mismatch stops here, in one line.
    await store.open()
    engine = OrchestratorEngine(store, Config(), serve_http=False)  # the app below is its HTTP face
    if blueprints is not None:
        names = engine.load_blueprints(blueprints)
        if not names:
            raise ConfigError(f"{blueprints}: no Blueprint found in any .py file")
    if not settings.global_worker_token and not settings.workers_config_path:
        log.warning("no GLOBAL_WORKER_TOKEN or WORKERS_CONFIG_PATH: every worker will be refused")
    if not settings.client_token and not settings.clients_config_path and settings.enable_client_api:
        log.warning("no CLIENT_TOKEN or CLIENTS_CONFIG_PATH: every client request will be refused")
    server = await start_server(engine, settings, install_signal_handlers=True, log_level="info")
    if tune_gc:
        _tune_gc()
    typer.echo(f"podium serving on {server.url} (docs: {server.url}/_public/docs)")
    await server.wait()


GC_THRESHOLDS = (50_000, 20, 100)
"""The collector's thresholds while serving (Python's defaults: 700, 10, 10)."""


def _tune_gc() -> None:
    """Once the server is up: freeze what start-up allocated (modules, the app, blueprints: ~70,000
    objects that never become garbage) out of the collector's scans, and collect the young generations
    less often. Under the server benchmark the collector's share of the server's CPU falls from about a
    tenth to almost nothing (the 700-allocation default ran ~470 young and 4 full collections per 6,000
    jobs, each full one scanning every job the memory store holds); cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def command(
    host: str | None = typer.Option(None, "--host", help="Address to bind (API_HOST)."),
    port: int | None = typer.Option(None, "--port", help="Port (API_PORT; 0 picks a free one)."),
    blueprints: Path | None = typer.Option(
        None, "--blueprints", help="A folder of .py files defining Blueprints.", exists=True, file_okay=False
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="memory://, sqlite:///path/to/podium.db, postgresql://user@host/db?schema=podium"
        " or redis://host:port/db?prefix=name"
        " (default: PODIUM_STORE_URL, SQLite).",
    ),
    clients: Path | None = typer.Option(None, "--clients", help="clients.toml (CLIENTS_CONFIG_PATH)."),
    workers: Path | None = typer.Option(None, "--workers", help="workers.toml (WORKERS_CONFIG_PATH)."),
    settings_dir: Path | None = typer.Option(None, "--settings-dir", help="Where settings files are read."),
    schedules: Path | None = typer.Option(
        None, "--schedules", help="schedules.toml of the native scheduler (SCHEDULES_CONFIG_PATH)."
    ),
    tracing: str | None = typer.Option(
        None,
        "--tracing",
        help="OpenTelemetry spans of jobs, states and tasks (TRACING): otlp (to OTEL_EXPORTER_OTLP_ENDPOINT),"
        " console or off. Extra otel.",
    ),
) -> None:
    """Serve the podium API: jobs, remote workers (RXON), health, metrics and docs."""
    from podium.log import configure_logging

    configure_logging()
    overrides = {
        "api_host": host,
        "api_port": port,
        "clients_config_path": clients,
        "workers_config_path": workers,
        "schedules_config_path": schedules,
        "tracing": tracing,
    }
    from podium.settings import CoreSettings

    try:
        store_url = storage or CoreSettings.load(settings_dir=settings_dir).store_url
        _run(
            run_server(
                blueprints=blueprints,
                storage=store_url,
                overrides=overrides,
                settings_dir=settings_dir,
                tune_gc=True,
            )
        )
    except (ConfigError, MissingDependencyError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run the server on uvloop where it is installed (a dependency on Linux and macOS), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
