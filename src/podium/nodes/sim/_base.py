"""The base of simulated instruments: durations on the node's clock, a seed, and failure injection."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, Field

from podium.nodes._node import ActionFailed, RestNode, current_action

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["FailurePlan", "SimNode"]


class FailurePlan(BaseModel):
    """Which calls fail, and how.

    Attributes:
        fail_next: Fail this many of the next matching calls.
        probability: Then fail each matching call with this probability (seeded).
        message: The error text the failed action reports.
        actions: Only these actions fail; all when ``None``.
        errored: A failure also marks the node errored (an instrument fault needing ``reset``) rather than
            failing the action alone.
    """

    fail_next: int = Field(default=0, ge=0)
    probability: float = Field(default=0.0, ge=0.0, le=1.0)
    message: str = "simulated failure"
    actions: list[str] | None = None
    errored: bool = False


class SimNode(RestNode):
    """A simulated instrument. Action methods call :meth:`simulate` to take their time and maybe fail.

    Args:
        durations: Seconds per action name, over the class's ``default_durations``.
        default_duration_s: Seconds for every action (overrides the class defaults; ``0`` makes them instant).
        speed: Divides every duration (``60`` runs an hour of lab time in a minute).
        seed: Seeds the instrument's data and the probabilistic failures.
        failures: A failure plan to start with.
        **kwargs: Passed to :class:`~podium.nodes.RestNode` (``node_name``, ``clock``, ``work_dir``, ...).
    """

    default_durations: ClassVar[dict[str, float]] = {}
    error_on_exception: ClassVar[bool] = True

    def __init__(
        self,
        *,
        durations: Mapping[str, float] | None = None,
        default_duration_s: float | None = None,
        speed: float = 1.0,
        seed: int = 0,
        failures: FailurePlan | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self.default_duration_s = default_duration_s
        self.durations = {} if default_duration_s is not None else dict(type(self).default_durations)
        self.durations.update(durations or {})
        self.seed = seed
        self.rng = random.Random(seed)
        self._failure_rng = random.Random(seed + 1)
        self.failures = failures or FailurePlan()
        self.calls: Counter[str] = Counter()

    def duration_s(self, action_name: str) -> float:
        """Seconds (clock time) the action takes at this node's speed."""
        base = self.durations.get(action_name, self.default_duration_s or 0.0)
        return base / self.speed

    def inject_failure(
        self,
        *,
        fail_next: int = 1,
        probability: float = 0.0,
        message: str = "simulated failure",
        actions: list[str] | None = None,
        errored: bool = False,
    ) -> FailurePlan:
        """Replace the failure plan; return it."""
        self.failures = FailurePlan(
            fail_next=fail_next, probability=probability, message=message, actions=actions, errored=errored
        )
        return self.failures

    def clear_failures(self) -> None:
        """No more injected failures."""
        self.failures = FailurePlan()

    def _should_fail(self, action_name: str) -> bool:
        plan = self.failures
        if plan.actions is not None and action_name not in plan.actions:
            return False
        if plan.fail_next > 0:
            plan.fail_next -= 1
            return True
        return plan.probability > 0 and self._failure_rng.random() < plan.probability

    async def simulate(self, *, duration_s: float | None = None, action_name: str | None = None) -> None:
        """Take the action's time on the node's clock, honouring pause, after maybe failing it.

        Raises:
            ActionFailed: The failure plan says this call fails (``RuntimeError`` when it marks the node
                errored).
        """
        req = current_action()
        name = action_name or (req.action_name if req is not None else "action")
        self.calls[name] += 1
        await self.wait_if_paused()
        if self._should_fail(name):
            if self.failures.errored:
                raise RuntimeError(self.failures.message)
            raise ActionFailed(self.failures.message, error_type="SimulatedFailure")
        delay = self.duration_s(name) if duration_s is None else duration_s / self.speed
        if delay > 0:
            await self.clock.sleep(delay)
        await self.wait_if_paused()

    def configure_app(self, app: FastAPI) -> None:
        """Add ``GET/POST/DELETE /sim/failures`` so tests and demos can inject failures over HTTP."""

        @app.get("/sim/failures")
        async def get_failures() -> dict[str, Any]:
            return self.failures.model_dump()

        @app.post("/sim/failures")
        async def set_failures(plan: FailurePlan) -> dict[str, Any]:
            self.failures = plan
            return plan.model_dump()

        @app.delete("/sim/failures")
        async def clear() -> dict[str, Any]:
            self.clear_failures()
            return self.failures.model_dump()
