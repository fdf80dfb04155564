"""Task chains (``chain.<n>``): definitions every engine builds from their name; the workcell's workflow runs
are jobs of them."""

from __future__ import annotations

from typing import Any

import pytest

from podium.engine import InProcessWorker
from podium.engine.chain import build_chain, chain_name
from podium.engine.errors import BlueprintError
from podium.store import Store

from .conftest import make_engine


def test_a_chain_has_one_pure_state_per_step_and_an_end() -> None:
    d = build_chain(chain_name(3))
    assert list(d.states) == ["step_0", "step_1", "step_2", "completed"]
    assert d.start_state == "step_0" and d.end_states == {"completed"}
    assert all(s.pure for s in d.states.values())  # folded into the write that leads to them
    assert "step_2 --> completed" in d.mermaid()
    assert build_chain("chain.0").start_state == "completed"
    with pytest.raises(BlueprintError, match="not a task chain"):
        build_chain("chain.x")


async def test_an_engine_runs_a_chain_job_with_nothing_registered(store: Store) -> None:
    engine = make_engine(store)
    seen: list[int] = []
    worker = InProcessWorker("w", capacity=1)

    @worker.skill("step")
    async def step(params: dict[str, Any]) -> dict[str, Any]:
        seen.append(params["index"])
        return {"status": "succeeded"}

    engine.add_worker(worker)
    async with engine:
        job_id = await engine.create_job(chain_name(3), {"task_type": "step", "n_steps": 3})
        job = await engine.wait_for_job(job_id, timeout_s=10)
    assert job.status == "finished" and job.state == "completed"
    assert seen == [0, 1, 2]
    assert "chain.3" not in engine.blueprints  # not an API blueprint


async def test_a_step_that_does_not_succeed_fails_the_chain(store: Store) -> None:
    engine = make_engine(store)
    worker = InProcessWorker("w", capacity=1)

    @worker.skill("step")
    async def step(params: dict[str, Any]) -> dict[str, Any]:
        if params["index"] == 1:
            return {"status": "failed", "error": {"code": "STEP_FAILED", "message": "the lid jammed"}}
        return {"status": "succeeded"}

    engine.add_worker(worker)
    async with engine:
        job_id = await engine.create_job(chain_name(3), {"task_type": "step", "n_steps": 3})
        job = await engine.wait_for_job(job_id, timeout_s=10)
    assert job.status == "failed" and job.state == "step_1"
    assert job.error is not None and job.error["task_error"]["message"] == "the lid jammed"
