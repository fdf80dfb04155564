"""The daily jobs commands: ``podium jobs|job|workers`` and ``podium blueprint graph``.

``jobs``, ``job``, ``workers`` and ``blueprint graph`` talk to a jobs server (``podium serve``; ``--url`` or
``PODIUM_SERVER_URL``, default ``http://127.0.0.1:8080``) with a client token (``--token``,
``PODIUM_CLIENT_TOKEN`` or ``CLIENT_TOKEN``). ``blueprint graph --blueprints DIR`` needs no server: it loads
the code. Tables for people, ``--json`` for scripts; exit codes in
:mod:`podium.cli._output`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from podium.cli._output import (
    SERVER_TOKEN,
    SERVER_URL,
    ExitCode,
    fail,
    one_line_errors,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from podium.client.jobs import JobClient

__all__ = ["blueprint_app", "commands", "groups"]

DEFAULT_URL = "http://127.0.0.1:8080"
_JSON = typer.Option("--json", help="Print JSON (for scripts).")

blueprint_app = typer.Typer(help="Blueprints: their state graphs.", no_args_is_help=True)


def _client(url: str, token: str | None) -> JobClient:
    from podium.client.jobs import JobClient

    return JobClient(url, token=token)


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def jobs(
    status: Annotated[str | None, typer.Option("--status", "-s", help="Only jobs in this status.")] = None,
    blueprint: Annotated[str | None, typer.Option("--blueprint", "-b", help="Only this blueprint.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000, help="At most this many.")] = 50,
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, SERVER_URL] = DEFAULT_URL,
    token: Annotated[str | None, SERVER_TOKEN] = None,
) -> None:
    """Jobs, newest first, filtered by status and blueprint."""
    with one_line_errors(url), _client(url, token) as client:
        page = client.list(status=status, blueprint=blueprint, limit=limit)
    if as_json:
        print_json([j.model_dump(mode="json") for j in page.items])
        return
    rows = [[j.id, j.blueprint_name, j.status, j.step or "", _when(j.created_at)] for j in page.items]
    print_table(["job", "blueprint", "status", "state", "created"], rows)


def job(
    job_id: Annotated[str, typer.Argument(help="The job's id.", show_default=False)],
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, SERVER_URL] = DEFAULT_URL,
    token: Annotated[str | None, SERVER_TOKEN] = None,
) -> None:
    """One job with its history."""
    with one_line_errors(url), _client(url, token) as client:
        view = client.get(job_id)
        history = client.history(job_id)
    if as_json:
        print_json({"job": view.model_dump(mode="json"), "history": [h.model_dump() for h in history]})
        return
    typer.echo(f"{view.id} {view.blueprint_name}: {view.status} at {view.step or '-'}")
    if view.error:
        typer.echo(f"error: {view.error}")
    if view.result is not None:
        typer.echo(f"result: {view.result}")
    rows = [[h.seq, _when(h.ts), h.event, h.status or "", _brief(h.data)] for h in history]
    print_table(["#", "when", "event", "status", "data"], rows, title="history")


def _brief(data: dict[str, Any], width: int = 80) -> str:
    text = ", ".join(f"{k}={v}" for k, v in data.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def workers(
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, SERVER_URL] = DEFAULT_URL,
    token: Annotated[str | None, SERVER_TOKEN] = None,
) -> None:
    """Registered workers: status, skills, load and the age of their last heartbeat."""
    with one_line_errors(url), _client(url, token) as client:
        found = client.workers()
    if as_json:
        print_json([w.model_dump(mode="json") for w in found])
        return
    now = datetime.now(UTC).timestamp()
    rows = []
    for w in found:
        load = f"{len(w.current_tasks)}/{w.capacity}" if w.capacity else str(len(w.current_tasks))
        age = f"{max(0.0, now - w.last_seen):.0f} s" if w.last_seen else ""
        extra = w.model_extra or {}
        rows.append(
            [
                w.worker_id,
                w.worker_type,
                w.status,
                ", ".join(w.skills),
                load,
                extra.get("reputation", ""),
                age,
            ]
        )
    print_table(["worker", "type", "status", "skills", "load", "reputation", "heartbeat"], rows)


@blueprint_app.command("graph")
def blueprint_graph(
    name: Annotated[str, typer.Argument(help="The blueprint's name.", show_default=False)],
    blueprints: Annotated[
        Path | None,
        typer.Option(
            "--blueprints", help="Load it from this folder of .py files instead of asking the server."
        ),
    ] = None,
    url: Annotated[str, SERVER_URL] = DEFAULT_URL,
    token: Annotated[str | None, SERVER_TOKEN] = None,
) -> None:
    """A blueprint's state machine as a Mermaid graph."""
    if blueprints is not None:
        from podium.engine import OrchestratorEngine
        from podium.engine.errors import BlueprintNotFoundError
        from podium.engine.storage import MemoryStorage

        if not blueprints.is_dir():
            raise fail(f"--blueprints {blueprints}: not a folder", ExitCode.USAGE)
        with one_line_errors(str(blueprints)):
            engine = OrchestratorEngine(MemoryStorage(), serve_http=False)
            engine.load_blueprints(blueprints)
            try:
                typer.echo(engine.blueprint_graph(name))
            except BlueprintNotFoundError:
                raise fail(f"no blueprint {name!r} in {blueprints}", ExitCode.NOT_FOUND) from None
        return
    with one_line_errors(url), _client(url, token) as client:
        typer.echo(client.blueprint_graph(name))


commands: dict[str, Callable[..., None]] = {"jobs": jobs, "job": job, "workers": workers}
"""Registered as top-level ``podium`` commands (with the ``blueprint`` group)."""
groups = {"blueprint": blueprint_app}
"""Registered as ``podium <name> ...`` groups."""
