"""The ``podium`` command line.

Sub-commands live in modules of this package. Each exposes ``app`` (a typer group), ``command`` (one
command), ``commands`` (top-level commands by name) or ``groups`` (typer groups by name): ``db`` (schema
versions), ``demo``, ``serve``, ``workcell``, the daily commands of :mod:`podium.cli.lab` (``submit``,
``workflows``, ``nodes``, ...) and :mod:`podium.cli.jobs` (``jobs``, ``job``, ``workers``, ``blueprint graph``),
and ``flow`` (viz, trace history and replay). Exit codes: :mod:`podium.cli._output`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import typer

from podium import __version__
from podium.errors import PodiumError

__all__ = ["app", "main"]

app = typer.Typer(
    name="podium",
    help="podium: orchestrate lab workcells, remote workers and in-process flows on one durable engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# (module, name): a sub-app registered as a group, or a module-level `command` registered as a command.
_SUBCOMMANDS = [
    ("db", "db"),
    ("demo", "demo"),
    ("serve", "serve"),
    ("workcell", "workcell"),
    ("lab", ""),
    ("jobs", ""),
    ("flow", "flow"),
]


@app.command()
def version() -> None:
    """Print podium's version."""
    typer.echo(__version__)


def _register() -> None:
    for module_name, name in _SUBCOMMANDS:
        qualified = f"podium.cli.{module_name}"
        if importlib.util.find_spec(qualified) is None:
            continue
        module = importlib.import_module(qualified)
        for command_name, function in getattr(module, "commands", {}).items():
            app.command(name=command_name)(function)
        for group_name, group in getattr(module, "groups", {}).items():
            app.add_typer(group, name=group_name)
        if hasattr(module, "app"):
            app.add_typer(module.app, name=name)
        elif hasattr(module, "command"):
            app.command(name=name)(module.command)


_register()


def main() -> None:
    """Entry point of the ``podium`` console script: PodiumError becomes one clear line and exit 1."""
    try:
        app()
    except PodiumError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)
