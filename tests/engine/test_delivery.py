"""Worker deliveries: results fenced on the lease token, leases kept by heartbeats, tasks handed back."""

from __future__ import annotations

from typing import Any

from podium.clock import ManualClock
from podium.engine import ActionFactory, Blueprint
from podium.engine.errors import JobStateError
from podium.store import Store
from podium.store.base import Put
from tests.engine.conftest import finished, make_engine


def one_task() -> Blueprint:
    bp = Blueprint("one")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.dispatch_task("work", {}, transitions={"success": "done"})

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def test_a_result_from_a_holder_whose_task_was_leased_again_is_ignored(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store)
    engine.register_blueprint(one_task())
    async with engine:
        job_id = await engine.create_job("one")
        first = await engine.take_task("a", ["work"], lease_s=10)
        assert first is not None
        await clock.advance(11)  # a's lease lapses: the task is offered again
        second = await engine.take_task("b", ["work"], lease_s=10)
        assert second is not None and second.task_id == first.task_id
        # Given a late result from a, when b holds the task, then a's result is recorded and ignored
        assert (
            await engine.complete_task(
                first.task_id, "success", {"by": "a"}, token=first.token, worker_id="a"
            )
            == "ignored"
        )
        assert (
            await engine.complete_task(
                second.task_id, "success", {"by": "b"}, token=second.token, worker_id="b"
            )
            == "applied"
        )
        job = await finished(engine, job_id)
    assert job.status == "finished" and job.state_history["by"] == "b"
    history = await engine.job_history(job_id)
    ignored = [h.data for h in history if h.event == "result_ignored"]
    assert len(ignored) == 1 and "leased again" in ignored[0]["reason"]


async def test_a_late_result_for_a_task_nobody_took_since_still_counts(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store)
    engine.register_blueprint(one_task())
    async with engine:
        job_id = await engine.create_job("one")
        task = await engine.take_task("a", ["work"], lease_s=10)
        assert task is not None
        await clock.advance(11)  # lapsed, but nobody else took it
        assert (
            await engine.complete_task(task.task_id, "success", {}, token=task.token, worker_id="a")
            == "applied"
        )
        assert (
            await engine.complete_task(task.task_id, "success", {}, token=task.token, worker_id="a")
            == "ignored"
        )
        assert (await finished(engine, job_id)).status == "finished"


async def test_extend_task_keeps_a_long_task_from_being_offered_again(manual_store: Store) -> None:
    clock = manual_store.clock
    assert isinstance(clock, ManualClock)
    engine = make_engine(manual_store, TASK_LEASE_S=10)
    engine.register_blueprint(one_task())
    async with engine:
        job_id = await engine.create_job("one")
        task = await engine.take_task("a", ["work"])
        assert task is not None
        for _ in range(5):  # 40 s of work, heartbeats every 8 s
            await clock.advance(8)
            assert await engine.extend_task(task.task_id, task.token)
            assert await engine.take_task("b", ["work"]) is None
        assert not await engine.extend_task(task.task_id, task.token + 1000)  # not the holder's token
        assert await engine.complete_task(task.task_id, token=task.token, worker_id="a") == "applied"
        assert (await finished(engine, job_id)).status == "finished"
        assert not await engine.extend_task(task.task_id, task.token)  # done: nothing to keep


async def test_release_task_offers_it_again_at_once(store: Store) -> None:
    engine = make_engine(store)
    engine.register_blueprint(one_task())
    async with engine:
        job_id = await engine.create_job("one")
        task = await engine.take_task("a", ["work"], lease_s=300)
        assert task is not None
        assert await engine.release_task(task.task_id, task.token)
        assert (await engine.get_task(task.task_id)).status == "queued"
        again = await engine.take_task("b", ["work"])
        assert again is not None and again.task_id == task.task_id and again.token != task.token
        assert not await engine.release_task(task.task_id, task.token)  # a's delivery is gone
        assert await engine.complete_task(task.task_id, token=task.token, worker_id="a") == "ignored"
        assert await engine.complete_task(again.task_id, token=again.token, worker_id="b") == "applied"
        assert (await finished(engine, job_id)).status == "finished"


async def test_contract_violation_error_quarantines_the_job(store: Store) -> None:
    engine = make_engine(store)
    engine.register_blueprint(one_task())
    async with engine:
        job_id = await engine.create_job("one")
        task = await engine.take_task("a", ["work"])
        assert task is not None
        error = {"code": "CONTRACT_VIOLATION_ERROR", "message": "out of contract"}
        assert await engine.complete_task(task.task_id, "failure", None, error, token=task.token) == "applied"
        job = await finished(engine, job_id)
    assert job.status == "quarantined" and job.error is not None
    assert job.error["code"] == "CONTRACT_VIOLATION_ERROR"


def approval() -> Blueprint:
    bp = Blueprint("ask")

    @bp.handler(is_start=True)
    async def start(actions: ActionFactory) -> None:
        actions.await_human_approval(message="ok?", transitions={"approved": "done", "rejected": "done"})

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def test_an_approval_token_is_refused_for_a_job_that_has_none(store: Store) -> None:
    engine = make_engine(store)
    engine.register_blueprint(approval())
    async with engine:
        job_id = await engine.create_job("ask")
        rec = await store.get("job", job_id)
        assert rec is not None and rec.status == "waiting_for_approval"
        data: dict[str, Any] = {
            **rec.data,
            "wait": {k: v for k, v in rec.data["wait"].items() if k != "token"},
        }
        await store.apply(Put("job", job_id, data, rec.version, rec.status, rec.group))
        engine.core.forget([job_id])
        for token in ("None", "", "anything"):
            try:
                await engine.resolve_approval(job_id, "approved", token=token)
            except JobStateError as exc:
                assert "wrong approval token" in str(exc)
            else:  # pragma: no cover - the bug this guards against
                raise AssertionError(f"token {token!r} was accepted")
        view = await engine.approve(job_id)  # without a token (a client the server authenticated)
        assert view.status in ("running", "finished")


async def test_job_view_names_the_creating_client(store: Store) -> None:
    engine = make_engine(store)
    engine.register_blueprint(approval())
    async with engine:
        mine = await engine.create_job("ask", client={"token": "alice", "plan": "free"})
        anonymous = await engine.create_job("ask")
        assert (await engine.get_job(mine)).client_name == "alice"
        assert (await engine.get_job(anonymous)).client_name is None
