"""The run journal: every write of a workflow run's view and what goes with it.

Owns the workflow view's writes (fenced on the known versions), a step outcome's datapoints, feed-forward
parameters and resource effects, resource writes, the listeners and the "something changed" event. It must not
schedule, start or finish steps, nor talk to nodes or the job engine: it builds and commits store operations
the engine hands it, and the engine passes the job operations.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from podium.engine.errors import JobNotFoundError, JobStateError
from podium.store import Append, Op, Put, Store
from podium.workcell.actions import ActionResult, Error
from podium.workcell.datapoints import DataPoint, DatapointRepository
from podium.workcell.locations import Location
from podium.workcell.nodes import ActionOutcome
from podium.workcell.resources import Resource, ResourceError, ResourceTable
from podium.workcell.workflows import Step, Workflow

__all__ = ["RESOURCE_KIND", "WORKFLOW_KIND", "Listener", "RunJournal"]

log = logging.getLogger("podium.workcell")

WORKFLOW_KIND = "workcell.workflow"
RESOURCE_KIND = "workcell.resource"

Listener = Callable[[str, Workflow], None]
"""Called with ``(event, workflow)`` after every committed transition."""


class RunJournal:
    """Builds and commits the store writes of a workcell's runs, datapoints and resources."""

    def __init__(
        self,
        *,
        store: Store,
        datapoints: DatapointRepository,
        locations: dict[str, Location],
        resources: ResourceTable,
        workflows: dict[str, Workflow],
        versions: dict[str, int],
        resource_versions: dict[str, int],
        in_flight: Callable[[str], bool],
        not_before: dict[str, float],
        listeners: list[Listener],
        is_owner: Callable[[], bool],
    ) -> None:
        self.store = store
        self.datapoints = datapoints
        self.locations = locations
        self.resources = resources
        """The live resource table (the engine replaces it on take-over and sets it here too)."""
        self.workflows = workflows
        self.versions = versions
        self.resource_versions = resource_versions
        self._in_flight = in_flight
        self.not_before = not_before
        self.listeners = listeners
        self._is_owner = is_owner
        self.changed = asyncio.Event()
        """Set (and replaced) after every committed transition: what ``wait_for`` waits on."""
        self.changing: Counter[str] = Counter()
        """Workflows whose live view is being changed and written: what readers of the live view must not
        take for committed until the write is done (see :meth:`change`)."""

    def datapoints_for(
        self, wf: Workflow, step: Step, outcome: ActionOutcome, now: datetime
    ) -> tuple[dict[str, str | list[str]], list[DataPoint], list[Op]]:
        """The datapoints a step's outcome made (ids by label, the datapoints, and their writes)."""
        ids: dict[str, str | list[str]] = {}
        dps: list[DataPoint] = []
        ops: list[Op] = []
        labels = step.data_labels
        for key, value in (outcome.datapoints or {}).items():
            ids[labels.get(key, key)] = value
        if outcome.json_result is not None:
            label = labels.get("json_result", "json_result")
            dp, op = self.datapoints.value_put(
                outcome.json_result, label=label, at=now, workflow_id=wf.workflow_id, step_id=step.step_id
            )
            ids[label] = dp.datapoint_id
            dps.append(dp)
            ops.append(op)
        for key, path in outcome.files.items():
            label = labels.get(key, key)
            dp, op = self.datapoints.file_put(
                Path(path),
                filename=Path(path).name,
                label=label,
                at=now,
                workflow_id=wf.workflow_id,
                step_id=step.step_id,
            )
            ids[label] = dp.datapoint_id
            dps.append(dp)
            ops.append(op)
        return ids, dps, ops

    def feed_forward(self, wf: Workflow, step: Step, index: int, dps: list[DataPoint]) -> None:
        """Fill the run's feed-forward parameters from the datapoints a step made."""
        by_label = {dp.label: dp for dp in dps}
        for param in wf.parameters.feed_forward:
            dp: DataPoint | None = None
            if param.step is None:
                dp = by_label.get(param.label) if param.label else None
            elif (
                param.step == index
                or param.step == step.key
                or (isinstance(param.step, str) and param.step == step.name)
            ):
                if param.label is not None:
                    dp = by_label.get(param.label)
                elif len(dps) == 1:
                    dp = dps[0]
                elif param.parameter_type == "feed_forward_json":
                    dp = by_label.get("json_result")
                else:
                    dp = next((d for d in dps if d.data_type == "file"), None)
            if dp is None:
                continue
            if param.parameter_type == "feed_forward_json":
                wf.parameter_values[param.key] = dp.value
            else:
                wf.file_input_ids[param.key] = dp.datapoint_id

    def apply_effects(self, step: Step, result: ActionResult, now: datetime) -> list[Op]:
        """Apply a succeeded step's resource effects to the table; the writes of what changed."""
        changed: list[Resource] = []
        for effect in step.effects:
            try:
                if effect.kind == "move":
                    src, dst = self.locations[str(effect.source)], self.locations[str(effect.target)]
                    if src.resource_id is None or dst.resource_id is None:
                        raise ResourceError(
                            f"move {effect.source} -> {effect.target}: both locations need a container"
                        )
                    changed += self.resources.move(src.resource_id, dst.resource_id, key=effect.key)
                elif effect.kind in {"consume", "refill"}:
                    res = self.resources.find(str(effect.resource))
                    if res is None:
                        raise ResourceError(f"no resource {effect.resource}")
                    qty = float(effect.quantity or 0)
                    changed += self.resources.change_quantity(
                        res.resource_id, -qty if effect.kind == "consume" else qty
                    )
                else:
                    res = self.resources.find(str(effect.resource))
                    if res is None:
                        raise ResourceError(f"no resource {effect.resource}")
                    changed += self.resources.set_attribute(res.resource_id, str(effect.field), effect.value)
            except (ResourceError, KeyError, ValueError) as exc:
                # The action already happened on the instrument: record the mismatch, do not undo the step.
                result.errors.append(
                    Error(
                        message=f"resource effect {effect.kind} not applied: {exc}",
                        error_type="ResourceEffectError",
                        logged_at=now,
                    )
                )
                log.warning("resource effect %s of step %s not applied: %s", effect.kind, step.label, exc)
        for r in changed:
            r.updated_at = now
        return self.resource_ops(changed)

    def wf_ops(
        self,
        wf: Workflow,
        event: str,
        data: dict[str, Any] | None = None,
        *,
        extra: list[Op] | None = None,
        new: bool = False,
    ) -> tuple[list[Op], Callable[[], None]]:
        """The workflow view's write for a transition (with ``extra`` and a history line), and what to do
        once it is written (by the store directly or inside a job operation of the engine)."""
        state = wf.status.state.value
        expected = 0 if new else self.versions.get(wf.workflow_id)
        ops: list[Op] = [
            Put(
                WORKFLOW_KIND,
                wf.workflow_id,
                wf.model_dump(mode="json"),
                expected_version=expected,
                status=state,
                group=wf.workflow_definition_id,
            ),
            *(extra or []),
            Append(wf.workflow_id, event, state, data or {}),
        ]

        def done() -> None:
            # Every Put adds one to its record's version: no need to read back what was written.
            if expected is None:
                self.versions.pop(wf.workflow_id, None)
            else:
                self.versions[wf.workflow_id] = expected + 1
            for op in ops:
                if isinstance(op, Put) and op.kind == RESOURCE_KIND and op.expected_version is not None:
                    self.resource_versions[op.id] = op.expected_version + 1
            self.datapoints.offload(ops)  # file datapoints now recorded: copied to S3 in the background
            if self._is_owner():
                self.workflows[wf.workflow_id] = wf
            else:  # a standby keeps no live state: reads go to the store, the owner adopts the workflow
                self.workflows.pop(wf.workflow_id, None)
                self.versions.pop(wf.workflow_id, None)
            if wf.status.terminal and not self._in_flight(wf.workflow_id):
                self.not_before.pop(wf.workflow_id, None)
            for listener in list(self.listeners):
                try:
                    listener(event, wf)
                except Exception:
                    log.exception("workcell listener failed on %s", event)
            self.notify()

        return ops, done

    async def commit(
        self,
        wf: Workflow,
        event: str,
        data: dict[str, Any] | None = None,
        *,
        extra: list[Op] | None = None,
    ) -> None:
        """Write the workflow view (with everything that goes with this transition) in one transaction."""
        ops, done = self.wf_ops(wf, event, data, extra=extra)
        await self.store.apply(*ops)
        done()

    async def apply(self, ops: list[Op]) -> None:
        """Write ``ops`` in one transaction and keep the resource versions they set."""
        results = await self.store.apply(*ops)
        for op, res in zip(ops, results, strict=True):
            if isinstance(op, Put) and op.kind == RESOURCE_KIND:
                self.resource_versions[op.id] = res.version

    def resource_ops(self, changed: list[Resource]) -> list[Op]:
        """The writes of changed resources (the last change of each), fenced on their stored version."""
        latest: dict[str, Resource] = {r.resource_id: r for r in changed}
        return [
            Put(
                RESOURCE_KIND,
                r.resource_id,
                r.model_dump(mode="json"),
                expected_version=self.resource_versions.get(r.resource_id, 0),
                status=r.base_type.value,
                group=r.parent_id,
            )
            for r in latest.values()
        ]

    @contextlib.contextmanager
    def change(self, workflow_id: str) -> Iterator[None]:
        """Mark a workflow's live view as changing from before its first change until its write is done (or
        failed): ``wait_for`` does not answer from a view whose write is still under way."""
        self.changing[workflow_id] += 1
        try:
            yield
        finally:
            self.changing[workflow_id] -= 1
            if self.changing[workflow_id] <= 0:
                del self.changing[workflow_id]
            self.notify()

    def notify(self) -> None:
        """Wake everything waiting on :attr:`changed` (and give the next waiters a fresh event)."""
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    async def job_op(
        self,
        wf: Workflow,
        event: str,
        op: Callable[..., Any],
        data: dict[str, Any] | None = None,
        *,
        extra: list[Op] | None = None,
        durable: bool = True,
    ) -> None:
        """An operation on the run's job, with the workflow view (and ``extra``) written in the same
        transaction. A job that cannot take it (say, a pause already in place) still gets the view written.
        ``durable=False`` is passed on to ``op`` (which must take it): the caller brings the write to disk."""
        ops, done = self.wf_ops(wf, event, data, extra=extra)
        try:
            if durable:
                await op(wf.workflow_id, extra_ops=ops)
            else:
                await op(wf.workflow_id, extra_ops=ops, durable=False)
        except (JobStateError, JobNotFoundError) as exc:
            log.warning("workflow %s: %s; writing its %s state alone", wf.workflow_id, exc, event)
            await self.store.apply(*ops)
        done()
