""":class:`EngineHarness`: an :class:`~podium.engine.OrchestratorEngine` set up for a test, with join/advance.

Owns building the engine on a memory store and a :class:`~podium.clock.ManualClock` (or the given store and
clock), registering blueprints and in-process workers, and closing what it started. Waiting is delegated to
:mod:`podium.testing.events` and time to :mod:`podium.testing.time`; it must not reach into the engine's
private state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from podium.clock import Clock, ManualClock
from podium.engine import (
    Config,
    EngineEvent,
    InProcessWorker,
    JobDefinition,
    JobView,
    OrchestratorEngine,
)
from podium.store import MemoryStore, Store
from podium.testing.events import DEFAULT_TIMEOUT_S, EventLog, EventPredicate, join, wait_event
from podium.testing.time import drive, settle

__all__ = ["TEST_CONFIG", "EngineHarness"]

T = TypeVar("T")

TEST_CONFIG: dict[str, Any] = {"RETRY_BACKOFF_BASE_S": 0.0, "EXECUTOR_POLL_WAIT_S": 5.0}
"""The engine settings a harness starts from: retries without backoff (a test sets one when it wants it)."""


class EngineHarness:
    """An engine for one test: ``async with EngineHarness(blueprints=[bp]) as h: await h.join(job_id)``.

    Args:
        store: The store (not opened, or opened: the engine opens it). Default: a new :class:`MemoryStore`
            on ``clock``, closed by the harness.
        clock: The clock. Default: the store's when one is given, else a new :class:`ManualClock`.
        config: The engine's :class:`~podium.engine.Config`; default :data:`TEST_CONFIG` updated with
            ``config_values``.
        blueprints: Definitions to register.
        workers: In-process workers to add (started with the engine).
        skip_time: Whether :meth:`join` skips virtual time by default (Temporal-style); off: time moves only
            through :meth:`advance`.
        config_values: ``Config`` fields over :data:`TEST_CONFIG` (``JOB_MAX_RETRIES=3``).
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Clock | None = None,
        config: Config | None = None,
        blueprints: Iterable[JobDefinition] = (),
        workers: Iterable[InProcessWorker] = (),
        skip_time: bool = False,
        **config_values: Any,
    ) -> None:
        self._own_store = store is None
        if store is None:
            store = MemoryStore(clock=clock if clock is not None else ManualClock())
        if config is None:
            config = Config(**{**TEST_CONFIG, **config_values})
        self.engine = OrchestratorEngine(store, config, clock=clock, serve_http=False)
        """The engine under test."""
        self.store = store
        """Its store."""
        self.clock: Clock = self.engine.clock
        """Its clock (a :class:`ManualClock` unless another was given)."""
        self.skip_time = skip_time
        self._events: EventLog | None = None
        for blueprint in blueprints:
            self.engine.register_blueprint(blueprint)
        for worker in workers:
            self.engine.add_worker(worker)

    @property
    def events(self) -> EventLog:
        """Every engine event from the first access on (made on demand: unwatched events are never built)."""
        if self._events is None:
            self._events = EventLog(self.engine)
        return self._events

    @property
    def manual_clock(self) -> ManualClock:
        """The clock as a :class:`ManualClock`; :class:`TypeError` when the harness runs on another clock."""
        if not isinstance(self.clock, ManualClock):
            raise TypeError(f"this harness runs on {type(self.clock).__name__}, not a ManualClock")
        return self.clock

    async def __aenter__(self) -> EngineHarness:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the engine (opens the store). Idempotent."""
        await self.engine.start()

    async def close(self) -> None:
        """Stop the engine, stop recording events, close the store if the harness made it. Idempotent."""
        await self.engine.stop()
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._own_store:
            await self.store.close()

    async def create_job(self, name: str, data: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """Create a job of blueprint ``name`` (see ``OrchestratorEngine.create_job``); its id."""
        return await self.engine.create_job(name, data, **kwargs)

    async def join(
        self, job_id: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, skip_time: bool | None = None
    ) -> JobView:
        """The job's terminal view; :class:`TimeoutError` naming its status after ``timeout_s`` real seconds.

        With ``skip_time`` (default: the harness's), a manual clock jumps to each pending deadline while the
        job waits on it; otherwise time moves only through :meth:`advance`.
        """
        if skip_time if skip_time is not None else self.skip_time:
            return await self.drive(join(self.engine, job_id, timeout_s))
        return await join(self.engine, job_id, timeout_s)

    async def wait_event(self, pred: EventPredicate, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> EngineEvent:
        """The next engine event matching ``pred`` (real time bound)."""
        return await wait_event(self.engine, pred, timeout_s)

    async def advance(self, seconds: float) -> None:
        """Move the manual clock ``seconds`` forward, firing due timers in order, then settle at the new time."""
        clock = self.manual_clock
        await clock.advance(seconds)
        await settle(clock)

    async def settle(self) -> None:
        """Let runnable work (and timers due now) run without moving time."""
        await settle(self.manual_clock)

    async def drive(self, aw: Awaitable[T]) -> T:
        """Await ``aw``, skipping virtual time to each pending deadline (see :func:`podium.testing.drive`)."""
        return await drive(self.manual_clock, aw)
