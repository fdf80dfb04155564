"""Operator commands: MADSci's admin commands, to one node or to the whole workcell.

``POST /admin/{command}/{node}`` (MADSci's route; ``podium workcell node NAME COMMAND``) sends a command to
one node: ``reset`` clears an errored node, ``lock``/``unlock`` and ``pause``/``resume`` hold or release
it, where the node offers them (its ``/info`` capabilities). ``POST /admin/{command}`` sends it to every
node that offers it; ``pause``/``resume`` and ``lock``/``unlock`` also set the workcell's own status
(nothing starts while it is paused or locked). After a command the node's status is read again, and the
scheduler runs, so a workflow waiting on the node goes on as soon as the node is ready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from podium.errors import InvalidInputError
from podium.wire.madsci_node import AdminCommands
from podium.workcell.errors import WorkflowStateError
from podium.workcell.monitor import NodeMonitor
from podium.workcell.nodes import NodeConnector
from podium.workcell.workcell import NodeRecord, WorkcellStatus

__all__ = ["ADMIN_COMMANDS", "WORKCELL_COMMANDS", "NodeAdmin"]

ADMIN_COMMANDS = frozenset(c.value for c in AdminCommands)
"""The admin commands MADSci's node protocol defines."""
WORKCELL_COMMANDS = {
    "pause": ("paused", True),
    "resume": ("paused", False),
    "lock": ("locked", True),
    "unlock": ("locked", False),
}
"""Admin commands that change the workcell's own status: command -> (status field, value)."""


class NodeAdmin:
    """Sends admin commands and refreshes what the workcell knows of the nodes afterwards."""

    def __init__(
        self,
        *,
        nodes: dict[str, NodeRecord],
        connector: Callable[[str], NodeConnector],
        monitor: NodeMonitor,
        busy_nodes: Callable[[], set[str]],
        set_workcell_status: Callable[..., Awaitable[WorkcellStatus]],
        wake: Callable[[], None],
    ) -> None:
        self.nodes = nodes
        self.connector = connector
        self.monitor = monitor
        self.busy_nodes = busy_nodes
        self.set_workcell_status = set_workcell_status
        self.wake = wake

    async def send(self, command: str, node: str | None = None) -> list[dict[str, Any]]:
        """Send ``command`` to ``node`` (or to every node that offers it, and to the workcell itself).

        Raises InvalidInputError for a command MADSci does not define, WorkflowNotFoundError for an unknown
        node, WorkflowStateError when the node does not offer the command. Returns the nodes' answers.
        """
        command = command.removeprefix("AdminCommands.").lower()
        if command not in ADMIN_COMMANDS:
            raise InvalidInputError(
                f"unknown admin command {command!r} (commands: {', '.join(sorted(ADMIN_COMMANDS))})",
                field="command",
            )
        names = [node] if node is not None else list(self.nodes)
        connectors = {name: self.connector(name) for name in names}  # an unknown node: nothing is sent
        if node is None and command in WORKCELL_COMMANDS:
            field, value = WORKCELL_COMMANDS[command]
            await self.set_workcell_status(**{field: value})
        out = []
        for name, conn in connectors.items():
            rec = self.nodes[name]
            offered = _offered(rec.info)
            if offered is not None and command not in offered:
                if node is None:
                    continue
                raise WorkflowStateError(
                    f"node {name} cannot perform admin command {command!r} (it offers {sorted(offered)})"
                )
            out.append(await conn.send_admin_command(command))
            if command == "reset" and rec.status:
                self.nodes[name] = rec.model_copy(
                    update={"status": {**rec.status, "errored": False, "errors": []}}
                )
        busy = self.busy_nodes()
        await asyncio.gather(*(self.monitor.poll(n) for n in names if n not in busy))
        self.wake()
        return out


def _offered(info: Mapping[str, Any] | None) -> set[str] | None:
    commands = ((info or {}).get("capabilities") or {}).get("admin_commands")
    return None if commands is None else {str(c) for c in commands}
