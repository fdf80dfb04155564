"""Fixtures for the flow tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from podium.flow import _clock
from tests.flow.helpers import EventLog


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def instant_sleep() -> Iterator[list[float]]:
    """Replace the runtime's backoff sleep with one that records the delay and returns at once."""
    delays: list[float] = []

    async def _sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(0)

    _clock.set_clock(sleeper=_sleep)
    try:
        yield delays
    finally:
        _clock.reset_clock()
