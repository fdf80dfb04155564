"""``podium demo``: podium's main job end to end on the embedded default (SQLite, simulated executors).

It runs the richest end-to-end scenario the installed podium has: a workcell workflow on simulated
instruments when :mod:`podium.workcell` provides ``podium.workcell.demo``; otherwise a blueprint job with an
in-process worker when :mod:`podium.engine` provides ``podium.engine.demo``; otherwise durable work
through the store alone.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from pathlib import Path

import typer

from podium.settings import CoreSettings

__all__ = ["command"]


def command(
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder for the SQLite store and data files."),
) -> None:
    """Run podium's main job end to end on SQLite with simulated instruments and workers."""
    settings = CoreSettings.load()
    folder = data_dir or settings.data_dir
    folder.mkdir(parents=True, exist_ok=True)
    for module_name in ("podium.workcell.demo", "podium.engine.demo"):
        if importlib.util.find_spec(module_name.rsplit(".", 1)[0]) and importlib.util.find_spec(module_name):
            module = importlib.import_module(module_name)
            asyncio.run(module.run_demo(folder))
            return
    asyncio.run(_store_demo(folder))


async def _store_demo(folder: Path) -> None:
    from podium.ids import new_ulid_str
    from podium.store import Ack, Append, Put
    from podium.store.sqlite import SQLiteStore

    path = folder / "podium.db"
    typer.echo(f"store: sqlite:///{path}")
    async with SQLiteStore(path) as store:
        job_ids = [new_ulid_str() for _ in range(3)]
        for n, job_id in enumerate(job_ids):
            await store.apply(
                Put("job", job_id, {"plate": f"P{n}"}, expected_version=0, status="pending"),
                Append(job_id, "created", status="pending"),
            )
            await store.enqueue("tasks", job_id, {"plate": f"P{n}"})
            typer.echo(f"job {job_id} submitted (plate P{n})")
        while leases := await store.take("tasks", owner="sim-worker", lease_s=30):
            lease = leases[0]
            job = await store.get("job", lease.id)
            assert job is not None
            result = {"plate": lease.payload["plate"], "absorbance": 0.42}
            await store.apply(
                Ack(lease),
                Put(
                    "job",
                    lease.id,
                    {**job.data, "result": result},
                    expected_version=job.version,
                    status="finished",
                ),
                Append(lease.id, "finished", status="finished", data=result),
            )
            typer.echo(f"job {lease.id} finished: {result}")
        finished = await store.count("job", status="finished")
        typer.echo(f"{finished} jobs finished; history kept in {path}")
