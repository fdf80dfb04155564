"""Run Avtomatika 1.0b30's own test suite against podium.engine and report which tests pass.

``python -m tests.interop.avtomatika_suite`` downloads Avtomatika's sdist once (``pip download --no-deps
--no-binary :all: avtomatika==1.0b30`` into ``$PODIUM_PEER_SRC``, default ``~/.cache/podium/peer-src``),
extracts only its ``tests/`` folder (so none of Avtomatika's own code can be imported), and runs the selected
test files with pytest in a subprocess of this interpreter, with the ``avtomatika_alias`` plugin
(``tests/interop/avtomatika_shim``) mapping ``avtomatika`` onto ``podium.engine``. It prints one line per
test that failed, a table per group, and one JSON line of figures.

The groups are the tests of Avtomatika's public Python API and those of its ``F`` filter conditions; its
HTTP handler tests (aiohttp internals), Redis, S3 and security tests are out of scope here.
``EXPECTED_FAILURES`` lists every test known to fail on podium, with the reason (also in docs/engine.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXPECTED_FAILURES", "GROUPS", "INTERNALS", "SuiteResult", "run_suite", "suite_dir"]

PACKAGE = "avtomatika"
VERSION = "1.0b30"
SHIM = Path(__file__).resolve().parent / "avtomatika_shim"

GROUPS: dict[str, dict[str, int]] = {
    "public_api": {
        "tests/test_blueprint_advanced_api.py": 10,
        "tests/test_blueprint_inferred_names.py": 5,
        "tests/test_blueprint_integrity.py": 5,
        "tests/test_context.py": 16,
        "tests/test_blueprint_loader.py": 2,
        "tests/test_engine.py": 4,
        "tests/test_memory_locking.py": 1,
    },
    "filters": {
        "tests/test_blueprint_conditions.py": 20,
        "tests/test_fast_filter_integration.py": 72,
    },
}
"""Group -> test file -> number of tests in it (as collected with Avtomatika itself): a file that cannot even
be imported on podium counts as that many failures, not as one."""

INTERNALS: dict[str, str] = {
    "tests/test_engine.py::test_setup_history_storage_postgres": "calls the private engine._setup_history_storage",
    "tests/test_engine.py::test_setup_history_storage_unsupported_scheme": "calls the private _setup_history_storage",
    "tests/test_engine.py::test_setup_history_storage_initialization_failure": "calls the private _setup_history_storage",
}
"""Tests in the public-API files that exercise private internals: run and reported as group ``internals``."""

EXPECTED_FAILURES: dict[str, str] = {
    "tests/test_blueprint_conditions.py::test_render_graph_with_filename": (
        "renders a PNG with Graphviz's `dot` program, which this machine lacks (fails on Avtomatika too)"
    ),
    "tests/test_engine.py::test_setup_history_storage_postgres": (
        "private engine._setup_history_storage(): podium keeps job history in its own store, no second database"
    ),
    "tests/test_engine.py::test_setup_history_storage_unsupported_scheme": (
        "private engine._setup_history_storage() and engine.history_storage (see the one above)"
    ),
    "tests/test_engine.py::test_setup_history_storage_initialization_failure": (
        "private engine._setup_history_storage() (see the one above)"
    ),
}
"""Test id -> why it fails on podium (also in docs/engine.md). A failing test not listed here fails
``tests/interop/test_avtomatika_suite.py``; a listed one that passes (``dot`` installed) is fine."""


def peer_src_root() -> Path:
    return Path(os.environ.get("PODIUM_PEER_SRC", Path.home() / ".cache" / "podium" / "peer-src"))


def suite_dir(*, timeout_s: float = 300) -> Path:
    """The extracted sdist (tests, README, pyproject only), downloaded and extracted once under a file lock."""
    root = peer_src_root()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / f"{PACKAGE}-{VERSION}"
    with open(root / f"{PACKAGE}-{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / ".complete").exists():
            return dest
        sdist = root / f"{PACKAGE}-{VERSION}.tar.gz"
        if not sdist.exists():
            pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check"]
            subprocess.run(
                [*pip, "--no-deps", "--no-binary", ":all:", f"{PACKAGE}=={VERSION}", "-d", str(root)],
                check=True,
                timeout=timeout_s,
            )
        prefix = f"{PACKAGE}-{VERSION}/"
        with tarfile.open(sdist) as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and m.name.startswith(prefix)
                and (
                    m.name.startswith(prefix + "tests/")
                    or m.name[len(prefix) :] in ("README.md", "pyproject.toml")
                )
            ]
            tar.extractall(root, members=members, filter="data")
        (dest / ".complete").write_text("tests, README.md and pyproject.toml only\n")
    return dest


@dataclass
class SuiteResult:
    """Outcome per test id (``passed``, ``failed``, ``error``, ``skipped``) and per group."""

    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def counts(self, group: str) -> tuple[int, int]:
        """(passed, total) of a group; total is the number of tests the group's files hold (a file that does
        not import counts all its tests as failed)."""
        ids = self.groups[group]
        passed = sum(self.outcomes[i] == "passed" for i in ids)
        if group == "internals":
            return passed, len(INTERNALS)
        moved = sum(1 for i in INTERNALS if i.split("::")[0] in GROUPS[group])
        return passed, sum(GROUPS[group].values()) - moved

    def failing(self, group: str) -> list[str]:
        return [i for i in self.groups[group] if self.outcomes[i] != "passed"]


def _parse_junit(path: Path, result: SuiteResult, group: str) -> None:
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "")
        name = case.get("name", "")
        if not module:  # a file that failed to import: "tests.test_x" with a collection error
            module, name = name, "<collection>"
        parts = module.split(".")
        # classname "tests.test_x.TestClass" or "tests.test_x"; the id is the pytest node id
        file_parts, class_parts = parts, []
        for i, p in enumerate(parts):
            if p.startswith("test_") and i > 0:
                file_parts, class_parts = parts[: i + 1], parts[i + 1 :]
                break
        node = "/".join(file_parts) + ".py::" + "::".join([*class_parts, name])
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed" if child.tag == "failure" else "error"
                message = (child.get("message") or "").splitlines()[0][:200] if child.get("message") else ""
            elif child.tag == "skipped":
                outcome, message = "skipped", (child.get("message") or "")[:200]
        result.outcomes[node] = outcome
        result.messages[node] = message
        result.groups.setdefault("internals" if node in INTERNALS else group, []).append(node)


def run_suite(groups: list[str] | None = None, *, timeout_s: float = 240) -> SuiteResult:
    """Run the selected groups of Avtomatika's tests against podium; never raises for test failures."""
    root = suite_dir()
    result = SuiteResult()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SHIM), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    env.pop("PYTEST_ADDOPTS", None)
    for group in groups or list(GROUPS):
        with tempfile.TemporaryDirectory() as tmp:
            junit = Path(tmp) / "junit.xml"
            cmd = [sys.executable, "-m", "pytest", "-p", "avtomatika_alias", "-p", "no:cacheprovider"]
            cmd += [
                "-q",
                "--continue-on-collection-errors",
                "-o",
                "junit_family=xunit1",
                f"--junitxml={junit}",
            ]
            cmd += list(GROUPS[group])
            subprocess.run(cmd, cwd=root, env=env, capture_output=True, timeout=timeout_s, check=False)
            _parse_junit(junit, result, group)
    return result


def main() -> int:
    result = run_suite(sys.argv[1:] or None)
    figures: dict[str, object] = {}
    for group in result.groups:
        for node in result.failing(group):
            known = EXPECTED_FAILURES.get(node)
            print(f"{result.outcomes[node]:7} {node}  {result.messages[node]}")
            print(f"        expected: {known}" if known else "        NOT in EXPECTED_FAILURES")
    print(f"\n{'group':12} {'passed':>6} {'total':>6} {'share':>6}")
    for group in result.groups:
        passed, total = result.counts(group)
        print(f"{group:12} {passed:6} {total:6} {passed / total:6.1%}")
        figures[group] = {"passed": passed, "total": total}
    print(json.dumps({"avtomatika_suite": VERSION, **figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
