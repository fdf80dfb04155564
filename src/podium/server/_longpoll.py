"""A remote worker's long poll as a push target of the engine's dispatch.

While a worker's ``GET .../tasks/next`` waits, :class:`PendingPoll` stands in the engine's dispatch like an
in-process worker with one free slot: the write that dispatches a task of one of its skills leases the
task straight to it and records it as running (see :meth:`podium.engine.dispatch.Dispatch.push_target`),
and the poll answers as soon as that write has committed. No store round trip to look for the task, no
second write to claim it, and one poll woken per task instead of every poll on the queue. Tasks that
become due without a dispatching write (a retry's delay passing, a lease expiring, a task given back) still
reach the poll through the store's own long poll, which runs beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from podium.engine.engine import OrchestratorEngine
from podium.engine.models import Task
from podium.errors import NotFoundError
from podium.store import Lease

__all__ = ["PendingPoll", "wait_for_tasks"]

Receive = Callable[[], Awaitable[Mapping[str, Any]]]


class PendingPoll:
    """One waiting long poll: a :class:`~podium.engine.dispatch.LocalWorker` with one slot, taken once."""

    lease_s: float | None = None

    def __init__(self, worker_id: str, skills: list[str]) -> None:
        self.worker_id = worker_id
        self._skills = skills
        self._reserved = 0
        self._closed = False
        self._settled = asyncio.Event()
        self._settled.set()
        self.got: asyncio.Future[Task] = asyncio.get_running_loop().create_future()

    @property
    def skills(self) -> list[str]:
        """The task types the worker asked for."""
        return self._skills

    @property
    def running(self) -> int:
        """Nothing runs here: the task runs in the worker's process."""
        return 0

    def free_slots(self) -> int:
        """One slot until a task is promised or handed over, or the poll ends."""
        return 0 if self._closed or self._reserved or self.got.done() else 1

    def reserve(self) -> None:
        """A write is committing a task leased to this poll."""
        self._reserved += 1
        self._settled.clear()

    def unreserve(self) -> None:
        """That write is over (the task follows in :meth:`deliver` if it committed)."""
        self._reserved -= 1
        if not self._reserved:
            self._settled.set()

    def deliver(self, task: Task, lease: Lease | None = None) -> None:
        """The committed task: the poll answers with it."""
        if not self.got.done():
            self.got.set_result(task)

    def close(self) -> None:
        """Take no more tasks (the caller detaches the poll from the dispatch)."""
        self._closed = True

    async def settled(self) -> None:
        """Wait until no write is committing a task to this poll."""
        await self._settled.wait()


async def _until_disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def wait_for_tasks(
    engine: OrchestratorEngine,
    receive: Receive,
    worker_id: str,
    skills: list[str],
    limit: int,
    wait_s: float,
) -> list[Task]:
    """Wait up to ``wait_s`` for tasks of ``skills``: one pushed by a dispatching write, or up to ``limit``
    from the store's long poll. Gives up as soon as the worker hangs up (tasks it got by then go back). For a
    caller that has just taken with ``wait_s=0`` and found nothing: work stealing is not tried again."""
    poll = PendingPoll(worker_id, skills)
    engine.dispatch.attach(poll)
    # The caller has just taken without waiting (and looked at loaded workers' queues): straight to the
    # store's long poll (which looks at the queues once more as it registers, then waits).
    take = asyncio.ensure_future(
        engine.take_tasks(worker_id, skills, limit=limit, wait_s=wait_s, steal=False)
    )
    gone = asyncio.ensure_future(_until_disconnected(receive))
    try:
        waits: set[asyncio.Future[Any]] = {take, gone, poll.got}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        engine.dispatch.detach(poll)
        poll.close()
        hung_up = gone.done() and not gone.cancelled() and gone.exception() is None
        gone.cancel()
        took = take.done()
        if not took:
            # Not awaited: a cancelled wait can outlive its cancel (Python 3.11's asyncio.wait_for returns
            # the result when it is cancelled just as its future completes). Whatever it still takes goes
            # back to the queue; this poll answers now.
            take.cancel()
            take.add_done_callback(functools.partial(_give_back_late, engine))
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    await poll.settled()  # a write leasing a task to this poll finishes (and delivers) or fails
    tasks = [poll.got.result()] if poll.got.done() else []
    if took and not take.cancelled():
        tasks += take.result()  # decided before the cancel: a late result only goes back
    current = asyncio.current_task()
    if current is not None and current.cancelling():
        await _give_back(engine, tasks)
        raise asyncio.CancelledError
    if hung_up:
        # Leased in the instant the worker left: hand them back now, not when their leases expire.
        await _give_back(engine, tasks)
        return []
    await _give_back(engine, tasks[limit:])  # pushed and taken at once: one too many
    return tasks[:limit]


_late: set[asyncio.Task[None]] = set()


def _give_back_late(engine: OrchestratorEngine, take: asyncio.Future[list[Task]]) -> None:
    """Hand back what a long poll's store take got after the poll had answered."""
    if take.cancelled() or take.exception() is not None or not take.result():
        return
    job = asyncio.ensure_future(_give_back(engine, take.result()))
    _late.add(job)
    job.add_done_callback(_late.discard)


async def _give_back(engine: OrchestratorEngine, tasks: list[Task]) -> None:
    for task in tasks:
        with contextlib.suppress(NotFoundError):
            await engine.release_task(task.task_id, task.token)
