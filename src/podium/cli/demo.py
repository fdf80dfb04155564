"""``podium demo``: podium's main job end to end on the embedded default (SQLite, simulated executors).

It runs the richest end-to-end scenario there is: :mod:`podium.workcell.demo`, a plate assay on
simulated instruments (robot arm, liquid handler, sealer, plate reader) served over HTTP, managed by the
workcell on SQLite in the data folder, submitted through ``WorkcellClient`` with a progress bar, its
reading saved as datapoints.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from podium.settings import CoreSettings

__all__ = ["command"]


def command(
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder for the SQLite store and data files."),
    stay_open: bool = typer.Option(
        False, "--stay-open", help="Keep serving the dashboard after the run, until Ctrl-C."
    ),
) -> None:
    """Run podium's main job end to end on SQLite with simulated instruments and workers."""
    settings = CoreSettings.load()
    folder = data_dir or settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    from podium.workcell.demo import report, run_demo

    try:
        report(asyncio.run(run_demo(folder, stay_open=stay_open)), folder)
    except KeyboardInterrupt:
        pass
