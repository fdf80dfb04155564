"""podium.flow.planner.eager.start_eager: a coroutine's first step runs at once, as a task of its own."""

from __future__ import annotations

import asyncio
import contextvars
import gc
from typing import Any

import pytest

from podium.flow.planner.eager import gather_eager, start_eager

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("eager_var", default="unset")


async def test_a_coroutine_that_does_not_suspend_is_done_on_return_in_a_task_of_its_own() -> None:
    caller = asyncio.current_task()
    seen: list[asyncio.Task[Any] | None] = []

    async def instant() -> str:
        seen.append(asyncio.current_task())
        VAR.set("inside")
        return "ok"

    task = start_eager(instant(), asyncio.get_running_loop())
    assert task.done() and task.result() == "ok"  # no turn of the loop was needed
    assert seen[0] is task and seen[0] is not caller
    assert asyncio.current_task() is caller
    assert VAR.get() == "unset"  # the step ran in its own copy of the context
    assert task.get_name().startswith("Task-") and task.get_name() in repr(task)
    task.set_name("branch")
    assert task.get_name() == "branch"


async def test_a_coroutine_that_suspends_goes_on_as_an_ordinary_task() -> None:
    gate = asyncio.Event()
    seen: list[asyncio.Task[Any] | None] = []

    async def waits() -> int:
        seen.append(asyncio.current_task())
        await gate.wait()
        seen.append(asyncio.current_task())
        return 7

    task = start_eager(waits(), asyncio.get_running_loop())
    assert not task.done() and task in asyncio.all_tasks()
    gate.set()
    assert await asyncio.wait_for(task, 5) == 7
    assert seen == [task, task]


async def test_errors_and_cancellation_in_the_first_step_end_the_task_as_asyncio_does() -> None:
    loop = asyncio.get_running_loop()

    async def fails() -> None:
        raise ValueError("boom")

    async def cancelled() -> None:
        raise asyncio.CancelledError

    async def cancels_itself() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        return "never seen"

    failed = start_eager(fails(), loop)
    assert failed.done() and isinstance(failed.exception(), ValueError)
    assert start_eager(cancelled(), loop).cancelled()
    self_cancelled = start_eager(cancels_itself(), loop)
    await asyncio.wait({self_cancelled}, timeout=5)
    assert self_cancelled.cancelled()


async def test_a_timeout_entered_in_the_first_step_cancels_the_branch_not_the_caller() -> None:
    async def impatient() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not reached"

    task = start_eager(impatient(), asyncio.get_running_loop())
    assert await asyncio.wait_for(task, 5) == "timed out"
    caller = asyncio.current_task()
    assert caller is not None and caller.cancelling() == 0


async def test_cancelling_a_suspended_task_reaches_the_coroutine_which_may_go_on() -> None:
    gate = asyncio.Event()
    caught = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()  # cancelled here, at its first suspension
        except asyncio.CancelledError:
            caught.set()
        await gate.wait()  # suspends again after the cancellation
        return "finished anyway"

    task = start_eager(stubborn(), asyncio.get_running_loop())
    task.cancel()
    await asyncio.wait_for(caught.wait(), 5)
    assert not task.done()
    gate.set()
    assert await asyncio.wait_for(task, 5) == "finished anyway"


async def test_cancelling_a_suspended_task_that_does_not_catch_it_cancels_the_task() -> None:
    async def waits() -> None:
        await asyncio.Event().wait()

    task = start_eager(waits(), asyncio.get_running_loop())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert task.cancelled()


async def test_gather_eager_gives_results_in_order_each_coroutine_in_a_task_of_its_own() -> None:
    caller = asyncio.current_task()
    gate = asyncio.Event()
    tasks: list[asyncio.Task[Any] | None] = []

    async def instant(value: int) -> int:
        tasks.append(asyncio.current_task())
        return value

    async def waits(value: int) -> int:
        tasks.append(asyncio.current_task())
        await gate.wait()
        return value

    asyncio.get_running_loop().call_soon(gate.set)
    results = await asyncio.wait_for(gather_eager([instant(1), waits(2), instant(3)]), 5)
    assert results == [1, 2, 3]
    assert len({id(task) for task in tasks}) == 3 and caller not in tasks
    assert asyncio.current_task() is caller


async def test_gather_eager_raises_a_first_step_failure_at_once() -> None:
    waiting: list[asyncio.Task[Any] | None] = []

    async def waits() -> None:
        waiting.append(asyncio.current_task())
        await asyncio.Event().wait()

    async def fails() -> None:
        raise ValueError("boom")

    started = waits()
    with pytest.raises(ValueError, match="boom"):
        await asyncio.wait_for(gather_eager([started, fails()]), 5)
    task = waiting[0]
    assert task is not None and not task.done()  # the suspended one goes on, as gather leaves it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_a_dropped_task_with_an_unretrieved_error_is_reported_as_asyncio_does() -> None:
    # a task done in its first step with a result skips asyncio's finalisers (nothing to report); any other
    # keeps them, under the one class name
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context["message"]))

    async def instant() -> str:
        return "ok"

    async def fails() -> None:
        raise ValueError("boom")

    try:
        for coro in (instant(), fails()):
            task = start_eager(coro, loop)
            assert type(task).__name__ == "_EagerTask"
            del task
            gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert reported == ["_EagerTask exception was never retrieved"]
