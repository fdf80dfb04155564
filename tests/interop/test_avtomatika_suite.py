"""Avtomatika 1.0b30's own tests, run against podium.engine (see ``avtomatika_suite.py``).

Each group must pass at >= 95%, every failing test must be listed in ``EXPECTED_FAILURES`` with its reason,
and every listed test must be named in docs/engine.md: nothing fails silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.interop.avtomatika_suite import EXPECTED_FAILURES, GROUPS, SuiteResult, run_suite

pytestmark = pytest.mark.interop

DOCS = Path(__file__).resolve().parents[2] / "docs" / "engine.md"


@pytest.fixture(scope="module")
def suite() -> SuiteResult:
    return run_suite()


@pytest.mark.parametrize("group", list(GROUPS))
def test_avtomatika_group_passes_on_podium(suite: SuiteResult, group: str) -> None:
    passed, total = suite.counts(group)
    unexpected = {n: suite.messages[n] for n in suite.failing(group) if n not in EXPECTED_FAILURES}
    assert not unexpected, f"failing and not in EXPECTED_FAILURES: {unexpected}"
    assert total > 0 and passed / total >= 0.95, f"{group}: {passed}/{total}"
    # every test of the group's files was seen (a file that fails to import shows as a <collection> error)
    assert not [n for n in suite.groups[group] if n.endswith("::<collection>")]
    assert len(suite.groups[group]) == total


def test_every_expected_failure_is_documented() -> None:
    text = DOCS.read_text()
    # each listed test is named in the docs by its file and its function name
    missing = [n for n in EXPECTED_FAILURES if any(p not in text for p in n.split("/")[-1].split("::"))]
    assert not missing, f"not in docs/engine.md: {missing}"
