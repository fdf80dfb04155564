"""Loading a workcell's stored state: resources, locations, nodes, the workcell status and the active runs.

Owns reading what the store holds at start-up or on a take-over (and the owner's creating the configured
locations and resources not stored yet). It must not run or schedule anything: active runs are handed to the
reconciler, nodes to the monitor.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from podium.clock import Clock
from podium.errors import InvalidInputError
from podium.store import Op, Put, Store
from podium.workcell._base import utcnow
from podium.workcell.journal import RESOURCE_KIND, WORKFLOW_KIND, RunJournal
from podium.workcell.locations import Location, LocationDefinition
from podium.workcell.monitor import NodeMonitor
from podium.workcell.reconcile import Reconciler
from podium.workcell.resources import Resource, ResourceTable
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import WorkcellDefinition, WorkcellStatus
from podium.workcell.workflows import WorkflowState

__all__ = ["LOCATION_KIND", "NODE_KIND", "STATUS_ID", "STATUS_KIND", "StateLoader"]

LOCATION_KIND = "workcell.location"
NODE_KIND = "workcell.node"
STATUS_KIND = "workcell.status"
STATUS_ID = "workcell"
_ACTIVE_STATES = [WorkflowState.QUEUED.value, WorkflowState.RUNNING.value, WorkflowState.PAUSED.value]


class StateLoader:
    """Reads a workcell's stored state into the live tables the engine and its components share."""

    def __init__(
        self,
        *,
        store: Store,
        clock: Clock,
        workcell: WorkcellDefinition,
        settings: WorkcellManagerSettings,
        workcell_status: WorkcellStatus,
        locations: dict[str, Location],
        resource_versions: dict[str, int],
        journal: RunJournal,
        monitor: NodeMonitor,
        reconciler: Reconciler,
        is_owner: Callable[[], bool],
    ) -> None:
        self.store = store
        self.clock = clock
        self.workcell = workcell
        self.settings = settings
        self.workcell_status = workcell_status
        self.locations = locations
        self.resource_versions = resource_versions
        self.journal = journal
        self.monitor = monitor
        self.reconciler = reconciler
        self._is_owner = is_owner

    async def locations_and_resources(self, resources: ResourceTable) -> None:
        """Read the stored resources and locations into ``resources``/the locations; the owner creates the
        configured ones not stored yet."""
        for rec in await self.list_all(RESOURCE_KIND):
            res = Resource.model_validate(rec.data)
            resources.load(res)
            self.resource_versions[res.resource_id] = rec.version
        stored = {
            Location.model_validate(r.data).location_name: (Location.model_validate(r.data), r.version)
            for r in await self.list_all(LOCATION_KIND)
        }
        ops: list[Op] = []
        now = utcnow(self.clock)
        for definition in self.workcell.locations:
            if definition.location_name in stored:
                self.locations[definition.location_name] = stored.pop(definition.location_name)[0]
                continue
            if not self._is_owner():
                continue  # the owner creates it; a standby reads it when it takes over
            loc, changed = self.location_from_definition(resources, definition, now)
            self.locations[loc.location_name] = loc
            ops += self.journal.resource_ops(changed)
            ops.append(Put(LOCATION_KIND, loc.location_id, loc.model_dump(mode="json"), expected_version=0))
        for name, (loc, _) in stored.items():  # locations added through the API earlier
            self.locations[name] = loc
        for rdef in self.workcell.resources:
            if self._is_owner() and not resources.query(resource_name=rdef.resource_name):
                ops += self.journal.resource_ops(resources.create(rdef, now=now))
        if ops:
            await self.journal.apply(ops)

    def location_from_definition(
        self, resources: ResourceTable, definition: LocationDefinition, now: datetime
    ) -> tuple[Location, list[Resource]]:
        """A location from its definition, and the container resource it creates in ``resources``, if any."""
        changed: list[Resource] = []
        resource_id = definition.resource_id
        try:
            rdef = self.workcell.template_resource(definition)
        except ValueError as exc:
            raise InvalidInputError(str(exc), field="resource_template_overrides") from None
        if rdef is not None:
            changed = resources.create(rdef, now=now)
            resource_id = changed[0].resource_id
        loc = Location(
            location_name=definition.location_name,
            location_id=definition.location_id,
            description=definition.description,
            representations=dict(definition.representations),
            resource_id=resource_id,
            allow_transfers=definition.allow_transfers,
        )
        return loc, changed

    async def nodes(self) -> None:
        """Register the configured and stored nodes with the monitor."""
        urls = dict(self.workcell.nodes)
        urls.update(self.settings.nodes)
        for rec in await self.list_all(NODE_KIND):
            urls.setdefault(rec.id, str(rec.data.get("node_url")))
        for name, url in urls.items():
            self.monitor.register(name, url)

    async def active_workflows(self) -> None:
        """Hold every stored active run live (through the reconciler)."""
        for rec in await self.list_all(WORKFLOW_KIND, status=_ACTIVE_STATES):
            self.reconciler.hold_run(rec)

    async def status(self) -> None:
        """Read the workcell's stored paused/locked status."""
        rec = await self.store.get(STATUS_KIND, STATUS_ID)
        if rec is not None:
            for field in ("paused", "locked"):
                setattr(self.workcell_status, field, bool(rec.data.get(field, False)))

    async def list_all(self, kind: str, *, status: list[str] | None = None) -> list[Any]:
        """Every stored record of ``kind`` (in pages of 500)."""
        out: list[Any] = []
        after: str | None = None
        while True:
            page = await self.store.list(kind, status=status, after=after, limit=500)
            out += page
            if len(page) < 500:
                return out
            after = page[-1].id
