"""Starting a coroutine as its own task, eagerly: Python 3.12's eager tasks, for the planner's branches on 3.11.

:func:`start_eager` runs the coroutine's first step at once, in the caller's turn of the loop, as a task of
its own: during that step ``asyncio.current_task()`` is the new task (so ``asyncio.timeout`` in a tool
cancels the branch, not the planner), the step runs in its own copy of the context (as ``create_task``
gives), and the caller's task is current again afterwards. A coroutine that finishes without suspending
returns a done task: no step was scheduled and the loop did not turn. One that suspends goes on as an
ordinary task, registered in ``all_tasks()``, awaited or cancelled like any other.

On 3.12 and later this is ``asyncio.Task(..., eager_start=True)``. On 3.11 it is asyncio's own pure
Python ``Task`` with its first step taken here: a step that returns sets the result directly; one that
suspends or raises is handed to the Task's own step machinery, which sees exactly what the first step
left (the future it yielded, the exception it raised), so cancellation, errors and wake-ups behave as
asyncio defines them.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from asyncio import format_helpers
from asyncio import tasks as _tasks
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import Any

__all__ = ["gather_eager", "start_eager"]


def _start_eager_312(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    task: asyncio.Future[Any] = asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return task


@types.coroutine
def _resuming(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """``coro`` after a first step that yielded ``yielded``: yield that to the task, then go on with ``coro``."""
    try:
        yield yielded
    except GeneratorExit:
        coro.close()
        raise
    except BaseException as exc:  # thrown into the task at its first suspension (e.g. its cancellation)
        try:
            yielded = coro.throw(exc)
        except StopIteration as stop:
            return stop.value
        return (yield from _resuming(coro, yielded))
    return (yield from coro)  # the task sends None on wake-up, as ``yield from`` does first


@types.coroutine
def _raising(exc: BaseException) -> Generator[Any, Any, Any]:
    """A first step that raised ``exc``: the task's own step records it as asyncio does."""
    raise exc
    yield  # a generator  # pragma: no cover


@types.coroutine
def _returning(value: Any) -> Generator[Any, Any, Any]:
    """A first step that returned while the task was asked to cancel itself: the task's own step decides."""
    return value
    yield  # a generator  # pragma: no cover


_PyTask: Any = getattr(_tasks, "_PyTask")  # noqa: B009 - asyncio's pure Python Task (3.11 keeps it beside the C one)
_py_set_result: Callable[[Any, Any], None] = getattr(asyncio.futures, "_PyFuture").set_result  # noqa: B009
_FINISHED: str = getattr(asyncio.futures, "_FINISHED")  # noqa: B009
_next_task_number: Callable[[], int] = getattr(_tasks, "_task_name_counter")  # noqa: B009
# asyncio's current task per loop, which _enter_task and _leave_task keep: the first step swaps its entry
# directly (two dict stores, where four calls check what is known here)
# (3.11's; later versions start eagerly with asyncio's own Task and may keep it elsewhere)
_current_tasks: dict[asyncio.AbstractEventLoop, Any] = getattr(_tasks, "_current_tasks", {})
_copy_context = contextvars.copy_context
_new = object.__new__


class _EagerTask(_PyTask):  # type: ignore[misc]
    """asyncio's pure Python Task, minus scheduling its first step in ``__init__`` (:func:`start_eager` takes it)."""

    _num_cancels_requested = 0
    _must_cancel = False
    _fut_waiter = None
    _name: str | None = None  # numbered when first asked for (most branches never are)

    # made by _first_steps_311 (object.__new__, then Future.__init__'s and Task.__init__'s attributes without
    # the call_soon: the others are class defaults), not by calling the class: that is a frame less per branch
    _callbacks: list[Any]
    _coro: Coroutine[Any, Any, Any]
    _context: contextvars.Context

    def get_name(self) -> str:
        if self._name is None:
            self._name = f"Task-{_next_task_number()}"
        return self._name

    # asyncio's two finalisers (Task's, then Future's) only report a task destroyed while pending or an
    # exception never retrieved: a task done in its first step with a result has neither, so its finaliser
    # is a C no-op (no frame); any other becomes a _FinalisedEagerTask, whose finaliser is asyncio's
    __del__ = object.__init__


class _FinalisedEagerTask(_EagerTask):
    """An :class:`_EagerTask` not done with a result in its first step: asyncio's finalisers apply."""

    __del__ = _PyTask.__del__


# what asyncio's reprs and finalisers' messages call it ("_EagerTask exception was never retrieved"): one name
_FinalisedEagerTask.__name__ = _FinalisedEagerTask.__qualname__ = _EagerTask.__name__


def _first_steps_311(
    coros: Iterable[Coroutine[Any, Any, Any]],
    loop: asyncio.AbstractEventLoop,
    results: list[Any],
    started: list[tuple[int, asyncio.Future[Any]]],
    tasks: list[asyncio.Future[Any]] | None,
) -> None:
    """Each coroutine's first step in turn, each as a task of its own (kept in ``tasks`` when given).

    The value of one that returned in that step with nothing else asked of its task is appended to
    ``results`` (its task done with it); for any other, ``None`` is, and (its index, its task) to ``started``.
    """
    current_tasks = _current_tasks
    current = current_tasks.get(loop)  # asyncio.current_task(loop)
    debug = loop.get_debug()
    for coro in coros:
        task = _new(_EagerTask)
        task._loop = loop
        task._callbacks = []
        if debug:
            task._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        task._coro = coro
        context = task._context = _copy_context()
        if tasks is not None:
            tasks.append(task)
        current_tasks[loop] = task  # _leave_task(loop, current), _enter_task(loop, task)
        try:
            try:
                yielded = context.run(coro.send, None)
            except StopIteration as stop:
                if not task._must_cancel:  # the usual case: done, in one step
                    if not task._callbacks:
                        task._result = value = stop.value
                        task._state = _FINISHED
                        results.append(value)
                        continue
                    # callbacks added by the coroutine to its own task: scheduled as set_result does
                    _py_set_result(task, stop.value)
                    started.append((len(results), task))
                    results.append(None)
                    continue
                task._coro = _returning(stop.value)
            except BaseException as exc:  # recorded (or re-raised) by the task's own step below
                task._coro = _raising(exc)
            else:
                task._coro = _resuming(coro, yielded)
            task.__class__ = _FinalisedEagerTask
            del current_tasks[loop]  # _leave_task(loop, task): the task's own step enters it again
            context.run(task._Task__step)
        finally:
            # _leave_task(loop, task) (if the step above did not), _enter_task(loop, current)
            if current is not None:
                current_tasks[loop] = current
            else:
                current_tasks.pop(loop, None)
        if not task.done():
            _tasks._register_task(task)
        started.append((len(results), task))
        results.append(None)


def _start_eager_311(coro: Coroutine[Any, Any, Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
    tasks: list[asyncio.Future[Any]] = []
    _first_steps_311((coro,), loop, [], [], tasks)
    return tasks[0]


def _first_steps_312(
    coros: Iterable[Coroutine[Any, Any, Any]],
    loop: asyncio.AbstractEventLoop,
    results: list[Any],
    started: list[tuple[int, asyncio.Future[Any]]],
    tasks: list[asyncio.Future[Any]] | None,
) -> None:
    for coro in coros:  # C tasks: done()/result() are cheap
        task = _start_eager_312(coro, loop)
        started.append((len(results), task))
        results.append(None)


start_eager: Callable[[Coroutine[Any, Any, Any], asyncio.AbstractEventLoop], asyncio.Future[Any]] = (
    _start_eager_312 if sys.version_info >= (3, 12) else _start_eager_311
)
_first_steps = _first_steps_312 if sys.version_info >= (3, 12) else _first_steps_311


async def gather_eager(coros: Iterable[Coroutine[Any, Any, Any]]) -> list[Any]:
    """``asyncio.gather(*coros)`` with each coroutine a task of its own started eagerly (as :func:`start_eager`).

    The results in order. A coroutine done in its first step costs no scheduled step, and its result is
    taken as it returns (no ``done()``/``result()`` round trip through the task); the others are awaited
    together, and a first step that raised or was cancelled raises at once, as ``gather`` does.
    """
    loop = asyncio.get_running_loop()
    results: list[Any] = []
    started: list[tuple[int, asyncio.Future[Any]]] = []
    _first_steps(coros, loop, results, started, None)
    pending: list[tuple[int, asyncio.Future[Any]]] = []
    for index, task in started:
        if task.done() and not task.cancelled() and task.exception() is None:
            results[index] = task.result()
        else:
            pending.append((index, task))
    if pending:
        for _index, task in pending:  # gather's behaviour: a branch already raising is raised at once
            if task.done() and (task.cancelled() or task.exception() is not None):
                task.result()
        for (index, _task), value in zip(
            pending, await asyncio.gather(*(t for _, t in pending)), strict=True
        ):
            results[index] = value
    return results
