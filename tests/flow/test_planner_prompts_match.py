"""The prompts podium's ReactPlanner shows its LLM are PenguiFlow 2.2.5's, byte for byte (and so are the steps).

tests/flow/planner_prompts_app.py runs on PenguiFlow itself (its peer venv) and on podium.flow through the
import hook; both print every message of every prompt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.peervenv import PENGUIFLOW, peer_python

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "tests" / "flow" / "planner_prompts_app.py"


def _run(command: list[str], pythonpath: str) -> str:
    env = {**os.environ, "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_planner_shows_the_llm_penguiflows_prompts_byte_for_byte() -> None:
    peer = str(peer_python("penguiflow", PENGUIFLOW))
    theirs = _run([peer, "-P", str(APP)], "")  # -P: the app's folder holds the import hook's penguiflow
    ours = _run([sys.executable, "-m", "tests.flow.penguiflow.alias", str(APP)], str(ROOT))
    assert theirs.count("--\n") == 4 and "answer_complete" in theirs  # four prompts, then the answer
    assert '"reason": "branch_failures", "status": "skipped"' in theirs  # the second plan's join was skipped
    assert (
        '"weight": 1e-05' in theirs and '\\"walruses\\"' in theirs
    )  # floats and quotes as json.dumps writes them
    assert ours == theirs
