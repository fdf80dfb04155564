"""schemathesis over the workcell's OpenAPI, bounded: no server error, no answer outside the schema.

Runs ``bench/fuzz_workcell.py`` (a workcell on a SQLite folder with the simulated instruments, a valid
token, the checks ``not_a_server_error``, ``status_code_conformance`` and ``response_schema_conformance``)
with a fixed seed and few examples per operation (about 2,600 requests, 13 s on a quiet 2-core machine;
the live event stream is left out, as its requests only waited for their timeout). Run it longer by hand:
``python bench/fuzz_workcell.py --max-examples 1000 --seed 7``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)
def test_schemathesis_finds_no_server_error_and_no_schema_violation() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fuzz_workcell.py"), "--max-examples", "8", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=ROOT,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["requests"] > 1000, done.stdout[-3000:]
    assert figures["server_errors"] == 0, figures["failures"]
    assert figures["schema_violations"] == 0, figures["failures"]
    assert figures["exit_code"] == 0, done.stdout[-5000:]
