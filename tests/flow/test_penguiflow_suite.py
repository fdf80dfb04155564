"""PenguiFlow 2.2.5's own test suite, run unchanged against podium.flow through the import hook.

The suite's files come from PenguiFlow's sdist (cached beside the peer venvs); ``penguiflow`` imports are
served by ``podium.flow`` (tests/flow/penguiflow/alias.py). Every test must pass but the files listed in
NOT_RUN, each with its reason. A failure is re-run once on its own before it counts (one test times two
50 ms sleeps against a 100 ms bound, which a loaded machine can miss).
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.flow.penguiflow.sources import penguiflow_source

ROOT = Path(__file__).resolve().parents[2]

NOT_RUN = {
    "tests/test_property_based.py": "needs hypothesis, which podium's dev extra does not install",
}
PLANNER_FILES = ("test_react_planner.py", "test_planner_prompts.py", "test_catalog.py")


def _run(source: Path, args: list[str], junit: Path) -> dict[str, str]:
    command = [
        sys.executable, "-m", "pytest", "-p", "tests.flow.penguiflow.alias", "-c", "pyproject.toml",
        "--rootdir", ".", "-p", "no:cacheprovider", "-q", "-W", "ignore::DeprecationWarning",
        f"--junitxml={junit}", *args,
    ]  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=300)
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        test_id = f"{case.get('classname')}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[test_id] = (
            "skipped" if case.find("skipped") is not None else "failed" if failed else "passed"
        )
    return outcomes


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    source = penguiflow_source()
    tmp = tmp_path_factory.mktemp("penguiflow-suite")
    ignores = [arg for path in NOT_RUN for arg in ("--ignore", path)]
    results = _run(source, ["tests", *ignores], tmp / "all.xml")
    failed = [test_id for test_id, outcome in results.items() if outcome == "failed"]
    if failed:
        node_ids = [f"tests/{t.split('::')[0].removeprefix('tests.')}.py::{t.split('::')[1]}" for t in failed]
        results.update(_run(source, node_ids, tmp / "rerun.xml"))
    return results


def test_the_whole_suite_passes(outcomes: dict[str, str]) -> None:
    failed = sorted(test_id for test_id, outcome in outcomes.items() if outcome != "passed")
    assert failed == []
    assert len(outcomes) >= 128  # 96 runtime + 6 A2A server + 20 ReactPlanner + 4 prompts + 2 catalog


def test_the_planner_tests_ran(outcomes: dict[str, str]) -> None:
    planner = {
        t: o for t, o in outcomes.items() if t.split("::")[0].removeprefix("tests.") + ".py" in PLANNER_FILES
    }
    assert len(planner) == 26 and set(planner.values()) == {"passed"}
