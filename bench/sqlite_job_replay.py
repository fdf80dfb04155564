"""The SQLite store's share of a ``bench_server`` job, without HTTP: CPU and WAL frames per job.

Replays, on :class:`~podium.store.SQLiteStore` (``synchronous=FULL``), the writes the server makes for one
job of ``bench_server``'s blueprint (``start -> dispatch_task(noop) -> finished``), one job after another:
the submission's transaction (job and task records, the task's queue item, three history rows), the
worker's take, the result's transaction (task and job records, the ack, four history rows) and an idle
worker's take that finds nothing. Prints the process's CPU per job (every thread: the syncer's fsyncs
too) and the WAL frames (pages) written per job, read from the WAL index's ``mxFrame``. Steadier than the
HTTP benchmark's ratios on a shared machine; run it on two checkouts to compare.

    python bench/sqlite_job_replay.py [N]
"""

from __future__ import annotations

import asyncio
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from podium.ids import new_ulid_str  # noqa: E402
from podium.store import Ack, Append, Enqueue, Put, SQLiteStore  # noqa: E402

POLLS = 18
"""Status polls per job (``bench_server``'s poll client on SQLite: about 18 a job)."""

JOB = {
    "blueprint": "bench",
    "state": "start",
    "step": 1,
    "initial_data": {},
    "state_history": {},
    "client": {"token": "default", "plan": "default", "params": {}},
}


def wal_frames(path: Path) -> int:
    """The WAL index's ``mxFrame`` (frames in the WAL since it last started over)."""
    with open(f"{path}-shm", "rb") as f:
        return int(struct.unpack("=I", f.read(20)[16:20])[0])


async def replay(n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "replay.db")
        await store.open()
        frames = 0
        start = time.process_time()
        for _ in range(n):
            j, t = new_ulid_str(), new_ulid_str()
            task = {"job_id": j, "task_type": "noop", "params": {}, "queue": "task:noop", "state": "start"}
            before = wal_frames(store.path)
            await store.apply(
                Append(j, "job_created", "pending", {"blueprint": "bench", "state": "start"}),
                Put("task", t, task, 0, "queued", j),
                Enqueue("task:noop", f"{t}:1", {"task_id": t, "job_id": j}),
                Append(j, "task_dispatched", None, {"task_id": t, "task_type": "noop"}),
                Put("job", j, {**JOB, "task_id": t}, 0, "waiting_for_worker", "bench"),
                Append(j, "job_waiting", "waiting_for_worker", {"state": "start", "task_id": t}),
            )
            for _ in range(POLLS // 2):
                store.peek("job", j)
            [lease] = await store.take_now(["task:noop", "task:@w0/noop"], owner="w0", lease_s=300, limit=1)
            running = {**task, "worker_id": "w0", "token": lease.token}
            await store.apply(Put("task", t, running, 1, "running", j), durable=False)
            for _ in range(POLLS - POLLS // 2):
                store.peek("job", j)
            await store.apply(
                Append(
                    j, "task_completed", "success", {"task_id": t, "status": "success", "worker_id": "w0"}
                ),
                Put("task", t, {**running, "result": {}}, 2, "completed", j),
                Ack(lease),
                Append(j, "transition", "running", {"state": "finished", "from": "start", "task_id": t}),
                Put("job", j, {**JOB, "state": "finished", "step": 2}, 1, "finished", "bench"),
                Append(j, "job_finished", "finished", {}),
                Append(j, "job_archived", "finished", {**JOB, "state": "finished"}),
            )
            await store.take_now(["task:noop", "task:@w1/noop"], owner="w1", lease_s=300, limit=1)
            after = wal_frames(store.path)
            if after >= before:  # not across a checkpoint (the WAL started over)
                frames += after - before
        cpu = time.process_time() - start
        await store.close()
    return cpu / n * 1e6, frames / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cpu_us, frames = asyncio.run(replay(n))
    print(f"{n} jobs: {cpu_us:.0f} us CPU/job, {frames:.1f} WAL frames/job")


if __name__ == "__main__":
    main()
