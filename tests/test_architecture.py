"""The direction of imports (DESIGN.md): server -> workcell -> engine -> store; SDKs -> wire; flow -> nothing.

Read off the source with ``ast`` so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "podium"

# package -> podium packages it must never import
FORBIDDEN = {
    "flow": {"*"},
    "store": {"engine", "workcell", "server", "worker", "nodes", "client", "flow", "cli"},
    "engine": {"workcell", "server", "worker", "nodes", "client", "cli"},
    "workcell": {"server", "worker", "cli"},
    "worker": {"engine", "store", "workcell", "server", "nodes"},
    "nodes": {"engine", "store", "workcell", "server", "worker"},
    "client": {"engine", "store", "workcell", "server", "worker", "nodes"},
    "wire": {"engine", "store", "workcell", "server", "worker", "nodes", "client", "cli"},
}
# modules that live inside a package but are adapters onto another layer, by design
ALLOWED = {
    "store/flow_state.py": {"flow"},
    # Avtomatika's drop-in: `await engine.start()` serves the HTTP API; the engine loads the server lazily
    # through this one module, only when asked to serve (OrchestratorEngine(serve_http=...)/SERVE_HTTP).
    "engine/_http.py": {"server"},
}
# known violations still to mend; strict xfail, so mending one makes its test fail until it leaves this list
KNOWN_VIOLATIONS: set[str] = set()


def podium_imports(path: Path) -> set[str]:
    """The podium sub-packages a file imports (``podium.engine.x`` -> ``engine``; ``podium`` itself -> ``""``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name == "podium" or name.startswith("podium."):
                parts = name.split(".")
                found.add(parts[1] if len(parts) > 1 else "")
    return found


def package_files() -> list[object]:
    return [
        pytest.param(
            package,
            path,
            marks=pytest.mark.xfail(strict=True, reason="known layering violation")
            if str(path.relative_to(SRC)) in KNOWN_VIOLATIONS
            else (),
        )
        for package in FORBIDDEN
        if (SRC / package).is_dir()
        for path in sorted((SRC / package).rglob("*.py"))
    ]


@pytest.mark.parametrize(("package", "path"), package_files(), ids=lambda v: str(v).split("src/podium/")[-1])
def test_imports_point_down(package: str, path: Path) -> None:
    relative = str(path.relative_to(SRC))
    imported = podium_imports(path) - {package} - ALLOWED.get(relative, set())
    forbidden = FORBIDDEN[package]
    bad = imported if "*" in forbidden else imported & forbidden
    assert not bad, f"{relative} imports podium.{', podium.'.join(sorted(bad))} against the layering"


def test_the_check_sees_imports() -> None:
    assert podium_imports(SRC / "store" / "sqlite.py") >= {"clock", "errors", "store"}
