"""schemathesis over the jobs server's OpenAPI (``podium serve`` on SQLite), bounded: no server error, no
status or body outside the published schema, no traceback in the server's log.

Runs ``bench/fuzz_server.py`` with a fixed seed and few examples per operation. Run it longer by hand:
``python bench/fuzz_server.py --max-examples 200 --seed 7``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_schemathesis_finds_no_server_error_and_no_schema_violation() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz_server.py"), "--max-examples", "8", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["requests"] > 500, done.stdout[-3000:]
    assert figures["server_errors"] == 0, figures["failures"]
    assert figures["schema_violations"] == 0, figures["failures"]
    assert figures["server_tracebacks"] == 0, done.stdout[-6000:]
    assert figures["server_alive"], done.stdout[-3000:]
    assert figures["exit_code"] == 0, done.stdout[-5000:]
