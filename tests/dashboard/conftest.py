"""Browser fixtures: Debian's Chromium, headless, driven by Playwright for Python (no browser download).

Without Chromium or Playwright the browser tests skip locally and fail when services are required
(``PODIUM_REQUIRE_SERVICES=1``, set by ``.ci/run``), as the Redis and PostgreSQL tests do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import services_required

CHROMIUM = os.environ.get("PODIUM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(message: str) -> None:
    if services_required():
        pytest.fail(f"{message}; PODIUM_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(f"skip: {message}")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where the tests save their screenshots: ``PODIUM_SCREENSHOT_DIR`` (``docs/img`` when refreshing the
    README's pictures), else the test's temporary folder."""
    folder = Path(os.environ.get("PODIUM_SCREENSHOT_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
