"""The HTTP connector: :class:`~podium.workcell.nodes.NodeConnector` over ``podium.nodes.NodeClient``."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from podium.clock import Clock, system_clock
from podium.nodes import NodeClient
from podium.nodes.client import ActionOutcome as NodeOutcome
from podium.workcell.actions import ActionStatus, Error
from podium.workcell.nodes import Acknowledged, ActionCall, ActionOutcome

__all__ = ["HttpNodeConnector"]

log = logging.getLogger("podium.workcell")


class HttpNodeConnector:
    """One node over HTTP. Result files are downloaded into a private temporary folder, from which the
    engine copies them into the data folder (an action's subfolder is made only when it has files).

    The node's status after an action: a podium node sends it with the action's end; another node is
    asked (``/status``) only when the action did not succeed (the node may be errored, paused, ...). After a
    success the workcell keeps the status it had and reads it again on its usual schedule, so a MADSci
    node's step costs no request beyond its own create and start (and result polls when it runs long).
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        client: NodeClient | None = None,
        clock: Clock | None = None,
        refresh_status: bool = True,
    ) -> None:
        self.name = name
        self.url = url
        self.client = client or NodeClient(url, clock=clock or system_clock)
        self.refresh_status = refresh_status
        self._tmp = Path(tempfile.mkdtemp(prefix=f"podium-wc-{name}-"))

    async def get_status(self) -> dict[str, Any]:
        return (await self.client.get_status()).model_dump(mode="json")

    async def get_info(self) -> dict[str, Any]:
        return (await self.client.get_info()).model_dump(mode="json")

    async def get_state(self) -> dict[str, Any]:
        return await self.client.get_state()

    async def send_admin_command(self, command: str) -> dict[str, Any]:
        return (await self.client.send_admin_command(command)).model_dump(mode="json")

    async def run_action(
        self, call: ActionCall, *, on_acknowledged: Acknowledged | None = None
    ) -> ActionOutcome:
        folder = self._tmp / call.action_id
        outcome = await self.client.run_action(
            call.action_name,
            call.args,
            files=dict(call.files) or None,
            action_id=call.action_id,
            download_dir=folder,
            on_created=on_acknowledged,
            refresh_status=False,
            created_as=call.created_as,
        )
        converted = _convert(call.action_id, outcome)
        if self.refresh_status and converted.node_status is None and not outcome.ok:
            try:
                converted.node_status = await self.get_status()
            except Exception as exc:  # the workcell reads it again soon; the outcome stands
                log.warning("status of node %s after action %s: %s", self.name, call.action_id, exc)
        return converted

    async def get_action_outcome(self, node_action_id: str, action_name: str) -> ActionOutcome:
        folder = self._tmp / node_action_id
        outcome = await self.client.reconcile(
            node_action_id, action_name=action_name or None, download_dir=folder
        )
        return _convert(node_action_id, outcome)

    async def await_action(self, node_action_id: str, action_name: str) -> ActionOutcome:
        folder = self._tmp / node_action_id
        outcome = await self.client.reconcile(
            node_action_id, action_name=action_name or None, wait=True, download_dir=folder
        )
        return _convert(node_action_id, outcome)

    async def aclose(self) -> None:
        await self.client.aclose()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _convert(action_id: str, outcome: NodeOutcome) -> ActionOutcome:
    return ActionOutcome(
        action_id=action_id,
        status=ActionStatus(outcome.status.value),
        errors=[Error.model_validate(e.model_dump(mode="json")) for e in outcome.errors],
        json_result=outcome.json_result,
        files=dict(outcome.files),
        datapoints=dict(outcome.datapoints) if outcome.datapoints else None,
        node_status=outcome.node_status.model_dump(mode="json") if outcome.node_status is not None else None,
    )
