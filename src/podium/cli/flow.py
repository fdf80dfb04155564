"""``podium flow``: in-process flows from the command line.

``viz module:flow`` draws a flow's graph (Mermaid or dot). ``history`` and ``replay`` are PenguiFlow's
``penguiflow-admin`` trace tools over a flow's stored history: ``history`` prints a trace's events as JSON lines
(``--json``: one array), ``replay`` prints them with a header, ``--delay`` seconds apart. Both read the store the
flow saved to (``StoreStateStore``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from podium.cli._output import ExitCode, fail
from podium.flow.admin import event_record
from podium.settings import CoreSettings
from podium.store import open_store
from podium.store.flow_state import StoreStateStore

__all__ = ["app"]

app = typer.Typer(help="In-process flows: their graphs, trace history and replay.", no_args_is_help=True)

StoreOption = typer.Option(
    None, "--store", help="Store URL (default: PODIUM_STORE_URL or sqlite:///podium-data/podium.db)."
)
TailOption = typer.Option(None, "--tail", help="Only the last N events of the trace.")


async def _events(store_url: str | None, trace_id: str, tail: int | None) -> list[dict[str, Any]]:
    store = open_store(store_url or CoreSettings.load().store_url)
    async with store:
        events = list(await StoreStateStore(store).load_history(trace_id))
    if tail is not None:
        events = events[-tail:] if tail > 0 else []
    return [event_record(event) for event in events]


@app.command()
def history(
    trace_id: str = typer.Argument(..., help="The trace to show."),
    store: str | None = StoreOption,
    tail: int | None = TailOption,
    as_json: bool = typer.Option(False, "--json", help="One JSON array instead of JSON lines."),
) -> None:
    """Print a trace's stored events, one JSON object per line."""
    records = asyncio.run(_events(store, trace_id, tail))
    if as_json:
        typer.echo(json.dumps(records, sort_keys=True, default=str))
        return
    for record in records:
        typer.echo(json.dumps(record, sort_keys=True, default=str))


@app.command()
def replay(
    trace_id: str = typer.Argument(..., help="The trace to replay."),
    store: str | None = StoreOption,
    tail: int | None = TailOption,
    delay: float = typer.Option(0.0, "--delay", help="Seconds to wait between events."),
) -> None:
    """Print a trace's events as they happened, after a header line."""

    async def run() -> None:
        records = await _events(store, trace_id, tail)
        if not records:
            typer.echo(f"# trace {trace_id} has no stored events")
            return
        typer.echo(f"# replay trace={trace_id} events={len(records)}")
        for record in records:
            typer.echo(json.dumps(record, sort_keys=True, default=str))
            if delay > 0:
                await asyncio.sleep(delay)

    asyncio.run(run())


@app.command("viz")
def flow_viz(
    target: Annotated[
        str, typer.Argument(help="module:attribute naming a Flow (or a function returning one).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="mermaid or dot.")] = "mermaid",
) -> None:
    """Draw an in-process flow's graph (Mermaid or Graphviz dot)."""
    from podium.flow.core import Flow
    from podium.flow.viz import flow_to_dot, flow_to_mermaid

    if fmt not in ("mermaid", "dot"):
        raise fail(f"--format {fmt!r}: use mermaid or dot", ExitCode.USAGE)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise fail(f"{target!r}: expected module:attribute (my_flows:build_flow)", ExitCode.USAGE)
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # as `python -m` would: the user's own modules import
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise fail(f"{target}: {exc}", ExitCode.NOT_FOUND) from None
    if callable(obj) and not isinstance(obj, Flow):
        obj = obj()
    if not isinstance(obj, Flow):
        raise fail(f"{target} is a {type(obj).__name__}, not a Flow", ExitCode.USAGE)
    typer.echo(flow_to_mermaid(obj) if fmt == "mermaid" else flow_to_dot(obj))
