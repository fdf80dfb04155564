"""``podium flow``: in-process flows from the command line (``podium flow viz module:flow``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from podium.cli._output import ExitCode, fail

__all__ = ["app"]

app = typer.Typer(help="In-process flows: their graphs.", no_args_is_help=True)


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
