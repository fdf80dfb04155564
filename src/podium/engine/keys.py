"""Every store name the engine uses: record kinds, queues, the recovery lock, item ids and timer keys.

One spelling each (arq keeps its Redis key names in ``arq/constants.py`` the same way). Owns names only:
it must not import any other engine module nor hold state.
"""

from __future__ import annotations

__all__ = [
    "DISPATCH_TIMER",
    "DISPATCH_TURN",
    "HEARTBEAT_TIMER",
    "JOB",
    "RECOVERY_LOCK",
    "RESULT_TIMER",
    "SCHEDULE_TIMER",
    "STEPS_QUEUE",
    "TASK",
    "TASK_QUEUE_PREFIX",
    "WORKER",
    "WORKER_LIVE",
    "WORKER_REP",
    "job_end",
    "step_item",
    "task_item",
    "task_queue",
]

JOB = "job"
"""Record kind of a job (group: its blueprint's name)."""
TASK = "task"
"""Record kind of a task (group: its job's id)."""
WORKER = "worker"
"""Record kind of a registered executor (group: its kind). Written at registration and when it goes offline."""
WORKER_LIVE = "worker_live"
"""Record kind of a remote worker's last heartbeat (status, load, hot skills) and the tasks dispatched to it
since: written often and without a flush (``durable=False``), as a heartbeat is soon sent again."""
DISPATCH_TURN = "dispatch_turn"
"""Record kind of the round-robin counter of one task type (id: the task type), shared by every instance."""
WORKER_REP = "worker_rep"
"""Record kind of a remote worker's reputation (kept across its re-registrations)."""

STEPS_QUEUE = "engine:steps"
"""The queue of job steps the executor runs (item id: :func:`step_item`)."""
TASK_QUEUE_PREFIX = "task:"
RECOVERY_LOCK = "engine:recovery"
"""The store lock whose holder runs recovery (one instance per store)."""

# Timer keys of the engine's TimerQueue: prefix + task id (hot paths write f"{DISPATCH_TIMER}{task_id}").
DISPATCH_TIMER = "d:"
RESULT_TIMER = "r:"
HEARTBEAT_TIMER = "hb"
SCHEDULE_TIMER = "s:"
"""Timer keys of schedules (prefix + schedule name), routed to the scheduler that arms them."""


def task_queue(task_type: str) -> str:
    """The store queue that holds tasks of ``task_type``."""
    return f"{TASK_QUEUE_PREFIX}{task_type}"


def worker_queue(worker_id: str, task_type: str) -> str:
    """The store queue of tasks of ``task_type`` a dispatch strategy chose one worker for (it takes them beside
    its skills' shared queues; an idle worker with that skill may steal them when that worker is loaded)."""
    return task_queue(f"@{worker_id}/{task_type}")


def job_end(job_id: str) -> str:
    """The wake-up name of a job's end: the commit that ends the job sends a store ``Wake`` of it, which
    wakes ``wait_for_job`` on every instance (the store's ``watch``)."""
    return f"job-end:{job_id}"


def step_item(job_id: str, step: int) -> str:
    """The id of a job's step in :data:`STEPS_QUEUE`."""
    return f"{job_id}.{step}"


def task_item(task_id: str, attempt: int) -> str:
    """The id of one attempt of a task in its task queue."""
    return f"{task_id}:{attempt}"
