"""Structured logs: JSON by default, text on request, ids on every line, local time zone."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from podium.log import bind_ids, configure_logging


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_json_lines_carry_bound_ids_and_extras() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out, level="DEBUG")
    log = logging.getLogger("podium.test")
    with bind_ids(job_id="01JOB", trace_id=None):
        log.info("job %s moved", "x", extra={"task_id": "01TASK"})
    log.warning("outside")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "job x moved" and first["job_id"] == "01JOB" and first["task_id"] == "01TASK"
    assert first["level"] == "info" and first["logger"] == "podium.test" and "trace_id" not in first
    assert "job_id" not in second


@pytest.mark.usefixtures("restore_root")
def test_text_format() -> None:
    out = io.StringIO()
    configure_logging(fmt="text", stream=out)
    with bind_ids(workflow_id="01WF"):
        logging.getLogger("podium.test").error("step failed")
    line = out.getvalue().strip()
    assert "ERROR" in line and "podium.test: step failed" in line and "workflow_id=01WF" in line


def test_timestamps_honour_tz_and_log_format_env() -> None:
    code = (
        "import logging; from podium.log import configure_logging; configure_logging();"
        "logging.getLogger('podium.x').info('hi')"
    )
    env = {**os.environ, "TZ": "Asia/Kolkata", "LOG_FORMAT": "json"}
    err = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stderr
    assert json.loads(err)["ts"].endswith("+05:30")
    env = {**os.environ, "TZ": "UTC", "LOG_FORMAT": "text"}
    err = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stderr
    assert "+00:00 INFO" in err and "podium.x: hi" in err
