"""What bounds a planner run: planning hints (ordering, parallel groups, tool filters) and budgets.

:class:`PlanningHints` and :func:`check_action` are pure: an action and the run's state in, the text of a
violation (fed back to the LLM) or ``None`` out. :class:`ConstraintTracker` counts hops and watches the
deadline; its snapshot travels with a paused run so a resume keeps what was already spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import prompts
from .models import PlannerAction, Trajectory

__all__ = ["ConstraintTracker", "PlanningHints", "check_action", "record_hint_progress"]


@dataclass(frozen=True, slots=True)
class PlanningHints:
    """Guidance for the LLM, enforced where it can be: tools never allowed, order, parallel limits."""

    ordering_hints: tuple[str, ...] = ()
    parallel_groups: tuple[tuple[str, ...], ...] = ()
    sequential_only: frozenset[str] = frozenset()
    disallow_nodes: frozenset[str] = frozenset()
    prefer_nodes: tuple[str, ...] = ()
    max_parallel: int | None = None
    budget_hints: Mapping[str, Any] | None = None

    @classmethod
    def from_mapping(cls, payload: Mapping[str, Any] | None) -> PlanningHints:
        """Read PenguiFlow's ``planning_hints`` mapping (``max_parallel`` may also sit in ``budget_hints``)."""
        if not payload:
            return cls()
        budget = dict(payload.get("budget_hints", {}))
        max_parallel = payload.get("max_parallel")
        if not isinstance(max_parallel, int):
            candidate = budget.get("max_parallel")
            max_parallel = candidate if isinstance(candidate, int) else None
        return cls(
            ordering_hints=tuple(str(item) for item in payload.get("ordering_hints", ())),
            parallel_groups=tuple(
                tuple(str(node) for node in group) for group in payload.get("parallel_groups", ())
            ),
            sequential_only=frozenset(str(item) for item in payload.get("sequential_only", ())),
            disallow_nodes=frozenset(str(item) for item in payload.get("disallow_nodes", ())),
            prefer_nodes=tuple(str(item) for item in payload.get("prefer_nodes", ())),
            max_parallel=max_parallel,
            budget_hints=budget,
        )

    def to_prompt_payload(self) -> dict[str, Any]:
        """The hints as the mapping :func:`prompts.render_planning_hints` renders (empty: no hints)."""
        payload: dict[str, Any] = {}
        constraints: list[str] = []
        if self.max_parallel is not None:
            constraints.append(f"max_parallel={self.max_parallel}")
        if self.sequential_only:
            constraints.append("sequential_only=" + ",".join(sorted(self.sequential_only)))
        if constraints:
            payload["constraints"] = "; ".join(constraints)
        if self.ordering_hints:
            payload["preferred_order"] = list(self.ordering_hints)
        if self.parallel_groups:
            payload["parallel_groups"] = [list(group) for group in self.parallel_groups]
        if self.disallow_nodes:
            payload["disallow_nodes"] = sorted(self.disallow_nodes)
        if self.prefer_nodes:
            payload["preferred_nodes"] = list(self.prefer_nodes)
        if self.budget_hints:
            payload["budget"] = dict(self.budget_hints)
        return payload


def _ordering_state(trajectory: Trajectory) -> dict[str, Any]:
    state: dict[str, Any] = trajectory.hint_state.setdefault(
        "ordering_state", {"completed": [], "warned": False}
    )
    state.setdefault("completed", [])
    return state


def check_action(
    action: PlannerAction,
    trajectory: Trajectory,
    hints: PlanningHints,
    *,
    has_hop_budget: bool,
    hop_limit: int,
) -> str | None:
    """The violation ``action`` commits against the budget or the hints, or ``None``.

    A parallel plan answers to the same budget and tool filters as a single call, plus ``max_parallel`` and
    ``sequential_only``. An ordering hint is a reminder, not a wall: the first out-of-order tool is refused once with the
    preferred sequence, and the LLM may insist (the trajectory's ``hint_state`` remembers the warning).
    """
    node = action.next_node
    if (node or action.plan) and not has_hop_budget:
        return prompts.render_hop_budget_violation(hop_limit)
    for name in [node] if node else [item.node for item in action.plan or ()]:
        if name in hints.disallow_nodes:
            return prompts.render_disallowed_node(name)
    if action.plan and hints.max_parallel is not None and len(action.plan) > hints.max_parallel:
        return prompts.render_parallel_limit(hints.max_parallel)
    if action.plan and hints.sequential_only:
        for item in action.plan:
            if item.node in hints.sequential_only:
                return prompts.render_sequential_only(item.node)
    if hints.ordering_hints and node is not None:
        state = _ordering_state(trajectory)
        done = len(state["completed"])
        if (
            done < len(hints.ordering_hints)
            and node != hints.ordering_hints[done]
            and node in hints.ordering_hints
            and not state.get("warned", False)
        ):
            state["warned"] = True
            return prompts.render_ordering_hint_violation(hints.ordering_hints, node)
    return None


def record_hint_progress(hints: PlanningHints, node: str, trajectory: Trajectory) -> None:
    """Advance the ordering hint when ``node`` is the next tool in the preferred sequence."""
    if not hints.ordering_hints:
        return
    state = _ordering_state(trajectory)
    done = len(state["completed"])
    if done < len(hints.ordering_hints) and node == hints.ordering_hints[done]:
        state["completed"].append(node)
        state["warned"] = False


class ConstraintTracker:
    """Hops spent and the deadline of one run (``time_source`` is a monotonic clock in seconds)."""

    __slots__ = (
        "_deadline_at",
        "_hop_budget",
        "_hops_used",
        "_time_source",
        "deadline_triggered",
        "hop_exhausted",
    )

    def __init__(
        self, *, deadline_s: float | None, hop_budget: int | None, time_source: Callable[[], float]
    ) -> None:
        self._time_source = time_source
        self._deadline_at = None if deadline_s is None else time_source() + deadline_s
        self._hop_budget = hop_budget
        self._hops_used = 0
        self.deadline_triggered = False
        self.hop_exhausted = hop_budget == 0

    @property
    def hop_budget(self) -> int | None:
        return self._hop_budget

    def check_deadline(self) -> str | None:
        """The deadline text once the deadline has passed (and remember that it did), else ``None``."""
        if self._deadline_at is None or self._time_source() < self._deadline_at:
            return None
        self.deadline_triggered = True
        return prompts.render_deadline_exhausted()

    def has_budget_for_next_tool(self) -> bool:
        return self._hop_budget is None or self._hops_used < self._hop_budget

    def record_hop(self) -> None:
        if self._hop_budget is None:
            return
        self._hops_used += 1
        if self._hops_used >= self._hop_budget:
            self.hop_exhausted = True

    def record_hops(self, count: int) -> None:
        """``record_hop()`` ``count`` times (a parallel plan's branches)."""
        if self._hop_budget is None or count <= 0:
            return
        self._hops_used += count
        if self._hops_used >= self._hop_budget:
            self.hop_exhausted = True

    def snapshot(self) -> dict[str, Any]:
        """The tracker as JSON data (PenguiFlow's keys); also what a run's metadata reports."""
        remaining = None if self._deadline_at is None else max(self._deadline_at - self._time_source(), 0.0)
        return {
            "deadline_at": self._deadline_at,
            "deadline_remaining_s": remaining,
            "hop_budget": self._hop_budget,
            "hops_used": self._hops_used,
            "deadline_triggered": self.deadline_triggered,
            "hop_exhausted": self.hop_exhausted,
        }

    @classmethod
    def from_snapshot(
        cls, snapshot: Mapping[str, Any], *, time_source: Callable[[], float]
    ) -> ConstraintTracker:
        """Rebuild a tracker after a pause: the remaining time restarts from now (clocks differ per process)."""
        remaining = snapshot.get("deadline_remaining_s")
        tracker = cls(
            deadline_s=None if remaining is None else max(float(remaining), 0.0),
            hop_budget=snapshot.get("hop_budget"),
            time_source=time_source,
        )
        if remaining is None and snapshot.get("deadline_at") is not None:
            tracker._deadline_at = snapshot["deadline_at"]
        tracker._hops_used = int(snapshot.get("hops_used", 0))
        tracker.deadline_triggered = bool(snapshot.get("deadline_triggered", False))
        tracker.hop_exhausted = (
            bool(snapshot.get("hop_exhausted", False)) or not tracker.has_budget_for_next_tool()
        )
        return tracker
