"""podium.testing: the harness podium's own tests use, shipped for yours.

In the spirit of Dramatiq's ``StubBroker.join`` and Temporal's time-skipping test environment: an engine or a
workcell on the memory store and a :class:`~podium.clock.ManualClock`, ``await h.join(id)`` (a terminal view,
or :class:`TimeoutError` naming where it stands) and ``await h.advance(seconds)`` (due timers fire in order,
then the loop settles). Waits are on the engine's own events with real-time timeouts; nothing sleeps.

- :class:`EngineHarness` -- an ``OrchestratorEngine`` with blueprints and in-process workers.
- :class:`WorkcellHarness` -- a ``WorkcellEngine`` on the simulated instruments of :mod:`podium.nodes.sim`.
- :class:`EventLog`, :func:`join`, :func:`wait_event`, :func:`watch` -- waiting on an engine you built.
- :func:`drive`, :func:`settle` -- virtual time: skip to each deadline, or run what is due now.

Test support: it may import the engine, the workcell, the store and the nodes; nothing under ``src/`` imports
it. Names load on first use (importing ``podium.testing`` loads neither engine nor workcell).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from podium.testing.engine import EngineHarness
    from podium.testing.events import EventLog, join, wait_event, watch
    from podium.testing.time import drive, settle
    from podium.testing.workcell import WorkcellHarness

__all__ = ["EngineHarness", "EventLog", "WorkcellHarness", "drive", "join", "settle", "wait_event", "watch"]

_HOME = {
    "EngineHarness": "podium.testing.engine",
    "EventLog": "podium.testing.events",
    "WorkcellHarness": "podium.testing.workcell",
    "drive": "podium.testing.time",
    "join": "podium.testing.events",
    "settle": "podium.testing.time",
    "wait_event": "podium.testing.events",
    "watch": "podium.testing.events",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'podium.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
