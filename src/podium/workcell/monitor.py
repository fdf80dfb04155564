"""Node monitoring: each node's connector, its last status/info/state, and when it is next read.

Owns the per-node back-off ("Node status" in :mod:`podium.workcell.engine`'s docstring), the loop that reads
due nodes, and the connectors. It must not schedule steps or touch workflow runs: it tells the engine that a
node's readiness changed through the ``wake`` callback, and learns which nodes are busy or needed from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock
from podium.workcell._base import utcnow
from podium.workcell.actions import Error
from podium.workcell.nodes import ConnectorFactory, NodeConnector
from podium.workcell.settings import WorkcellManagerSettings
from podium.workcell.workcell import NodeRecord, WorkcellInfo

__all__ = ["NodeMonitor", "NodeWatch"]

log = logging.getLogger("podium.workcell")


@dataclass(slots=True)
class NodeWatch:
    """When a node's status is next read, and what the last reads said (see "Node status")."""

    next_poll: float = 0.0
    last_poll: float | None = None
    idle_s: float = 0.0
    failures: int = 0
    info_at: float | None = None
    fresh: bool = False
    """The node just ended an action: its next read starts the back-off over."""


class NodeMonitor:
    """Watches a workcell's nodes: registers them, reads their status on a back-off, keeps the connectors."""

    def __init__(
        self,
        *,
        settings: WorkcellManagerSettings,
        clock: Clock,
        nodes: dict[str, NodeRecord],
        info: WorkcellInfo,
        connector_factory: ConnectorFactory,
        connectors: Mapping[str, NodeConnector],
        busy_nodes: Callable[[], set[str]],
        is_owner: Callable[[], bool],
        stopping: Callable[[], bool],
        wake: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.nodes = nodes
        """Shared with the engine (same dict): name -> the node's last known record."""
        self.info = info
        self._connector_factory = connector_factory
        self._given_connectors = dict(connectors)
        self.connectors: dict[str, NodeConnector] = {}
        """Name -> connector (shared with the engine's step runner)."""
        self._busy_nodes = busy_nodes
        self._is_owner = is_owner
        self._stopping = stopping
        self._wake = wake
        self._watch: dict[str, NodeWatch] = {}
        self._needed: set[str] = set()
        self._node_wake = asyncio.Event()

    def register(self, name: str, url: str) -> None:
        """Know a node by name and url, and make its connector."""
        self.nodes[name] = NodeRecord(node_url=url)
        self._watch[name] = NodeWatch(idle_s=self.settings.node_update_interval)
        self.info.nodes[name] = url
        conn = self._given_connectors.get(name)
        self.connectors[name] = conn if conn is not None else self._connector_factory(name, url)

    def read_all_soon(self) -> None:
        """Read every node's status at once (after taking over ownership)."""
        for watch in self._watch.values():
            watch.next_poll = self.clock.monotonic()
        self._node_wake.set()

    async def aclose(self) -> None:
        """Close every connector (errors ignored) and forget them."""
        for conn in self.connectors.values():
            with contextlib.suppress(Exception):
                await conn.aclose()
        self.connectors.clear()

    async def poll_all(self, *, update_info: bool = False) -> None:
        """Read every idle node's status now, concurrently (busy nodes are tracked by their action's calls)."""
        busy = self._busy_nodes()
        names = [n for n in self.nodes if n not in busy]
        await asyncio.gather(*(self.poll(n, update_info=update_info) for n in names))

    async def poll(self, name: str, *, update_info: bool = False) -> None:
        """Read one node's status (and info and state when asked, unknown or due); wake the engine if its
        readiness changed."""
        conn = self.connectors.get(name)
        rec = self.nodes.get(name)
        watch = self._watch.get(name)
        if conn is None or rec is None or watch is None:
            return
        was_ready = rec.ready
        now = self.clock.monotonic()
        failed = False
        try:
            status = await self.clock.wait_for(conn.get_status(), 10.0)
            info, state = rec.info, rec.state
            due = watch.info_at is None or now - watch.info_at >= self.settings.node_info_update_interval
            if update_info or info is None or due:
                info = await self.clock.wait_for(conn.get_info(), 10.0)
                state = await self.clock.wait_for(conn.get_state(), 10.0)
                watch.info_at = now
            new = rec.model_copy(update={"status": status, "info": info, "state": state})
            watch.failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed = True
            watch.failures += 1
            new = rec
            known = rec.status is not None and not rec.status.get("disconnected")
            if watch.failures >= self.settings.node_disconnect_after_failures or not known:
                if known:
                    log.warning("node %s is disconnected: %s", name, exc, extra={"node": name})
                err = Error.from_exception(exc, at=utcnow(self.clock)).model_dump(mode="json")
                new = rec.model_copy(
                    update={
                        "status": {
                            "ready": False,
                            "errored": True,
                            "disconnected": True,
                            "errors": [err],
                            "description": f"disconnected: {exc}",
                        }
                    }
                )
        if self.nodes.get(name) is rec:  # not replaced meanwhile (by an action's result or an admin call)
            self.nodes[name] = new
            self._plan_poll(name, changed=new.status != rec.status, failed=failed, at=now)
        if new.ready != was_ready:
            if new.ready and was_ready is False and rec.status and rec.status.get("disconnected"):
                log.info("node %s is reachable again", name, extra={"node": name})
            self._wake()

    def _plan_poll(self, name: str, *, changed: bool, failed: bool = False, at: float | None = None) -> None:
        """Set when a node's status is next read (see "Node status" in the module docstring)."""
        watch = self._watch[name]
        base = self.settings.node_update_interval
        cap = max(base, self.settings.node_info_update_interval)
        now = self.clock.monotonic() if at is None else at
        watch.last_poll = now
        if failed:
            # A first failure is checked again soon; after that, back off.
            interval = min(cap, base * 2 ** max(0, watch.failures - 1))
        elif changed or watch.fresh or name in self._needed:
            watch.idle_s = interval = base
        else:
            watch.idle_s = interval = min(cap, watch.idle_s * 2)
        watch.next_poll = now + interval
        watch.fresh = False
        self._node_wake.set()

    def status_needed(self, names: set[str]) -> None:
        """Nodes that queued steps wait for (not ready): read their status every ``node_update_interval``."""
        base = self.settings.node_update_interval
        for name in names - self._needed:
            watch = self._watch.get(name)
            if watch is not None:
                since = watch.last_poll if watch.last_poll is not None else self.clock.monotonic()
                watch.next_poll = min(watch.next_poll, since + base)
                self._node_wake.set()
        self._needed = names

    def status_from_action(
        self, name: str, status: dict[str, Any] | None, *, succeeded: bool = False
    ) -> None:
        """A node's step ended: take the status the action's result carried; without one, keep the status
        the node had when its action ``succeeded`` (read again in ``node_update_interval``), else read it
        at once."""
        rec = self.nodes.get(name)
        watch = self._watch.get(name)
        if rec is None or watch is None:
            return
        if status is None and succeeded:
            watch.fresh = True
            self._plan_poll(name, changed=False)
            return
        if status is None:
            watch.next_poll = self.clock.monotonic()
            watch.fresh = True
            self._node_wake.set()
            return
        watch.failures = 0
        self.nodes[name] = rec.model_copy(update={"status": status})
        self._plan_poll(name, changed=True)

    async def run(self) -> None:
        """Read due nodes' status until the engine stops (only while it owns the workcell)."""
        while not self._stopping():
            self._node_wake.clear()
            now = self.clock.monotonic()
            busy = self._busy_nodes()
            idle = {n: w for n, w in self._watch.items() if n in self.nodes and n not in busy}
            if not self._is_owner():  # the owner watches the nodes
                idle = {}
            due = [n for n, w in idle.items() if w.next_poll <= now]
            if due:
                try:
                    await asyncio.gather(*(self.poll(n) for n in due))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("node status poll failed")
                    for n in due:  # never spin on a node whose poll broke
                        self._watch[n].next_poll = max(self._watch[n].next_poll, now + 1.0)
                continue
            timeout = max(0.0, min(w.next_poll for w in idle.values()) - now) if idle else None
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._node_wake.wait(), timeout)
