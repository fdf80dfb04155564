"""``podium workcell``: serve a workcell manager, submit workflows, look at runs and nodes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from podium.cli._output import parse_pairs

__all__ = ["app"]

app = typer.Typer(
    help="The workcell manager (MADSci-compatible): serve, submit, status, nodes.", no_args_is_help=True
)

_URL = typer.Option("--url", "-u", envvar="WORKCELL_SERVER_URL", help="The workcell manager's URL.")
_TOKEN = typer.Option(
    "--token",
    envvar="WORKCELL_API_TOKEN",
    help="The workcell API token (default: the token a local `podium workcell serve` generated).",
    show_default=False,
)


@app.command()
def serve(
    workcell: Annotated[
        Path | None, typer.Option("--workcell", "-w", help="The workcell file (YAML).")
    ] = None,
    settings: Annotated[
        Path | None,
        typer.Option(
            "--settings",
            "-s",
            help="A MADSci 0.8 lab's settings.yaml: its workcell_nodes, location_locations, "
            "location_transfer_capabilities and resource_default_templates make the workcell.",
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the workcell API.")] = 8005,
    data_port: Annotated[int | None, typer.Option(help="Also serve the data routes on this port.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder for the database and datapoint files.")
    ] = None,
    store_url: Annotated[
        str | None, typer.Option(help="Store URL (default sqlite in the data folder).")
    ] = None,
    schedules: Annotated[
        Path | None,
        typer.Option(help="schedules.toml: run stored workflows (workflow = <definition id>) on a schedule."),
    ] = None,
) -> None:
    """Serve the workcell manager: ``podium workcell serve --port 8005 --workcell workcell.yaml``, or
    ``--settings settings.yaml`` for a MADSci 0.8 lab's own settings."""
    import uvicorn

    from podium.tokens import local_token_file, new_token, read_token_file, write_token_file
    from podium.workcell.server import build_engine, create_app

    engine = build_engine(
        workcell,
        settings_file=settings,
        data_dir=data_dir,
        store_url=store_url,
        server_url=f"http://{host}:{port}",
    )
    scheduler = None
    if schedules is not None:  # checked before anything is written or served: a bad file stops here
        from podium.ops import Scheduler, workcell_submit

        scheduler = Scheduler.from_file(engine.jobs, schedules, submit_workflow=workcell_submit(engine))
    token: str | None = None
    announced = []
    if not engine.settings.api_token_hashes:
        # No token configured: use the one kept in the data folder (clients keep working across
        # restarts), or make one; announce it to local clients for this port.
        token_file = engine.settings.token_file
        token = read_token_file(token_file) or new_token()
        write_token_file(token_file, token)
        for port_ in (port, data_port):
            local = local_token_file("workcell", f"http://127.0.0.1:{port_}") if port_ else None
            if local is not None:
                announced.append(write_token_file(local, token))
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        typer.echo(
            f"workcell API token in {token_file} (mode 0600)\n"
            f"  podium clients on this machine find it; elsewhere: --token / WORKCELL_API_TOKEN, or\n"
            f"  'Authorization: Bearer <token>'; MADSci clients: use http://podium:<token>@{shown}:{port} "
            f"as the workcell URL"
        )
    else:
        typer.echo("workcell API tokens: from the settings (WORKCELL_API_TOKENS / api_token_hashes)")
    extra = [token] if token else None
    application = create_app(engine, api_tokens=extra)
    if scheduler is not None:
        _run_schedules(application, scheduler)
    configs = [  # an open event stream (a dashboard) must not hold a stopping server for long
        uvicorn.Config(
            application, host=host, port=port, log_level="info", lifespan="on", timeout_graceful_shutdown=5
        )
    ]
    if data_port is not None:
        data_app = create_app(engine, manage_engine=False, api_tokens=extra)
        configs.append(
            uvicorn.Config(data_app, host=host, port=data_port, log_level="warning", lifespan="off")
        )

    async def run() -> None:
        servers = [uvicorn.Server(c) for c in configs]
        await asyncio.gather(*(s.serve() for s in servers))

    try:
        asyncio.run(run())
    finally:
        for path in announced:
            path.unlink(missing_ok=True)


def _run_schedules(application: Any, scheduler: Any) -> None:
    """Run the scheduler while the app serves (started once the app's lifespan started the workcell)."""
    import contextlib

    inner = application.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> Any:
        async with inner(app_):
            await scheduler.start()
            try:
                yield
            finally:
                await scheduler.stop()

    application.router.lifespan_context = lifespan


@app.command()
def submit(
    workflow: Annotated[Path, typer.Argument(help="A *.workflow.yaml file.")],
    url: Annotated[str, _URL] = "http://localhost:8005",
    token: Annotated[str | None, _TOKEN] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="name=value (JSON values allowed).")
    ] = None,
    file: Annotated[list[str] | None, typer.Option("--file", "-f", help="name=path of a file input.")] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the workflow to end, with progress.")] = True,
) -> None:
    """Submit a workflow and (by default) follow it to the end."""
    from podium.client.workcell import WorkcellClient, WorkflowFailedError

    with WorkcellClient(url, token=token) as client:
        try:
            wf = client.submit_workflow(
                workflow,
                _pairs(param, parse=True, option="--param"),
                _pairs(file, parse=False, option="--file"),
                await_completion=wait,
                show_progress=wait,
            )
        except WorkflowFailedError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        typer.echo(f"{wf.workflow_id} {wf.state.value}")


@app.command()
def status(
    workflow_id: Annotated[str | None, typer.Argument(help="A workflow id; omit for the queue.")] = None,
    url: Annotated[str, _URL] = "http://localhost:8005",
    token: Annotated[str | None, _TOKEN] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one workflow (steps, results, why it waits) or the active queue."""
    from rich.console import Console
    from rich.table import Table

    from podium.client.workcell import WorkcellClient

    with WorkcellClient(url, token=token) as client:
        if workflow_id is None:
            queue = client.get_workflow_queue()
            if as_json:
                typer.echo(json.dumps([w.model_dump(mode="json") for w in queue], indent=2))
                return
            table = Table("workflow", "name", "state", "step", "waiting for")
            for w in queue:
                table.add_row(
                    w.workflow_id,
                    w.name,
                    w.state.value,
                    str(w.status.current_step_index),
                    "; ".join(w.scheduler_metadata.reasons),
                )
            Console().print(table)
            return
        wf = client.query_workflow(workflow_id)
        if as_json:
            typer.echo(json.dumps(wf.model_dump(mode="json"), indent=2))
            return
        table = Table(
            "#", "step", "node", "action", "status", "datapoints", title=f"{wf.name} ({wf.state.value})"
        )
        for i, s in enumerate(wf.steps):
            dps = ", ".join(f"{k}={v}" for k, v in ((s.result.datapoints or {}) if s.result else {}).items())
            table.add_row(str(i), s.label, str(s.node), str(s.action), s.status.value, dps)
        Console().print(table)
        if wf.scheduler_metadata.reasons and not wf.status.terminal:
            Console().print("waiting: " + "; ".join(wf.scheduler_metadata.reasons))


@app.command()
def nodes(
    url: Annotated[str, _URL] = "http://localhost:8005", token: Annotated[str | None, _TOKEN] = None
) -> None:
    """List the workcell's nodes and whether they are ready."""
    from rich.console import Console
    from rich.table import Table

    from podium.client.workcell import WorkcellClient

    with WorkcellClient(url, token=token) as client:
        table = Table("node", "url", "ready", "status")
        for name, node in client.get_nodes().items():
            table.add_row(name, node.node_url, "yes" if node.ready else "no", node.status_description)
        Console().print(table)


@app.command()
def control(
    action: Annotated[str, typer.Argument(help="pause, resume, cancel, retry or resubmit.")],
    workflow_id: Annotated[str, typer.Argument()],
    url: Annotated[str, _URL] = "http://localhost:8005",
    token: Annotated[str | None, _TOKEN] = None,
    index: Annotated[int, typer.Option(help="For retry: the step to start from.")] = -1,
) -> None:
    """Pause, resume, cancel, retry or resubmit a workflow."""
    from podium.client.workcell import WorkcellClient

    with WorkcellClient(url, token=token) as client:
        ops: dict[str, Any] = {
            "pause": client.pause_workflow,
            "resume": client.resume_workflow,
            "cancel": client.cancel_workflow,
            "retry": lambda w: client.retry_workflow(w, index, await_completion=False),
            "resubmit": lambda w: client.resubmit_workflow(w, await_completion=False),
        }
        if action not in ops:
            raise typer.BadParameter(f"unknown action {action!r}: use one of {sorted(ops)}")
        wf = ops[action](workflow_id)
        typer.echo(f"{wf.workflow_id} {wf.state.value}")


@app.command()
def admin(
    command: Annotated[
        str,
        typer.Argument(help="pause, resume, lock, unlock (the workcell and its nodes), reset, shutdown, ..."),
    ],
    node: Annotated[str | None, typer.Option("--node", "-n", help="Only this node.")] = None,
    url: Annotated[str, _URL] = "http://localhost:8005",
    token: Annotated[str | None, _TOKEN] = None,
) -> None:
    """An admin command to the whole workcell (pause/resume/lock/unlock stop or restart its scheduling
    and go on to every node that offers them) or, with ``--node``, to one node."""
    from podium.client.workcell import WorkcellClient

    with WorkcellClient(url, token=token) as client:
        answer = client.send_admin_command(command, node)
        if node is None:
            status = client.get_workcell_state().status
            flags = [f for f in ("paused", "locked") if getattr(status, f)]
            typer.echo(f"workcell {', '.join(flags) or 'running'}; {len(answer)} node(s) answered")
        else:
            typer.echo(json.dumps(answer))


@app.command("node")
def node_command(
    name: Annotated[str, typer.Argument(help="The node's name in the workcell.")],
    command: Annotated[
        str | None,
        typer.Argument(help="reset, lock, unlock, pause, resume, cancel, safety_stop (omit: show the node)."),
    ] = None,
    url: Annotated[str, _URL] = "http://localhost:8005",
    token: Annotated[str | None, _TOKEN] = None,
) -> None:
    """Show one node's state, or act on it: ``podium workcell node sealer_1 reset`` clears an errored
    node (``unlock`` a locked one, ``resume`` a paused one); workflows waiting on it then go on."""
    from podium.client.workcell import WorkcellClient, WorkcellClientError
    from podium.workcell.scheduler import node_reason

    with WorkcellClient(url, token=token) as client:
        try:
            refused = False
            if command is not None:
                answer = client.send_admin_command(command, name)
                refused = isinstance(answer, dict) and answer.get("success") is False
                errors = "; ".join(str(e.get("message", e)) for e in (answer or {}).get("errors") or [])
                typer.echo(
                    f"{name} {command}: {'refused' if refused else 'done'}"
                    + (f" ({errors})" if errors else "")
                )
            record = client.get_node(name)
        except WorkcellClientError as exc:
            typer.secho(str(exc), fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from None
        typer.echo(f"{name}: ready" if record.ready else node_reason(name, record))
        if refused:
            raise typer.Exit(1)


def _pairs(items: list[str] | None, *, parse: bool, option: str) -> dict[str, Any]:
    try:
        return parse_pairs(items, parse=parse, option=option)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
