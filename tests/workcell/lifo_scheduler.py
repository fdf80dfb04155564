"""A custom scheduler loaded by module path in the tests: everything ready, priority 42."""

from __future__ import annotations

from podium.workcell import AbstractScheduler, SchedulerMetadata, Workflow


class Scheduler(AbstractScheduler):
    def run_iteration(self, workflows: list[Workflow]) -> dict[str, SchedulerMetadata]:
        return {w.workflow_id: SchedulerMetadata(ready_to_run=True, priority=42) for w in workflows}
