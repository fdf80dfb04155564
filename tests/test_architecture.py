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
    "store": {"engine", "workcell", "server", "worker", "nodes", "client", "flow", "cli", "testing"},
    "engine": {"workcell", "server", "worker", "nodes", "client", "cli", "testing"},
    "workcell": {"server", "worker", "cli", "testing"},
    "worker": {"engine", "store", "workcell", "server", "nodes", "testing"},
    "nodes": {"engine", "store", "workcell", "server", "worker", "testing"},
    "client": {"engine", "store", "workcell", "server", "worker", "nodes", "testing"},
    "wire": {"engine", "store", "workcell", "server", "worker", "nodes", "client", "cli", "testing"},
    # test support over engine/workcell/store/nodes: never the HTTP edge; nothing in src/ imports it
    "testing": {"server", "cli", "client", "worker", "flow"},
    # operations (scheduler, rate limits, metrics) over the engine and store; the server and the CLI use it
    "ops": {"server", "cli", "worker", "nodes", "client", "testing"},
    "server": {"testing"},
    # the dashboard is an HTTP edge below both apps: they pass it what it reads
    "dashboard": {
        "store",
        "engine",
        "workcell",
        "server",
        "worker",
        "nodes",
        "client",
        "flow",
        "cli",
        "testing",
    },
    "cli": {"testing"},
}
# modules that live inside a package but are adapters onto another layer, by design
ALLOWED = {
    "store/flow_state.py": {"flow"},
    # Avtomatika's scheduler names, over podium.ops (imported inside functions: ops builds on the engine)
    "engine/scheduler.py": {"ops"},
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


# --- size ratchet ---------------------------------------------------------------------------------------
# No module over MAX_LINES lines and no class over MAX_METHODS methods (the largest modules of the codebases we
# measure ourselves against, dramatiq, arq and starlette, stay under 1,000 lines). RATCHET names the files still
# over a limit with the size they may not grow past; shrinking one below the limit makes its test fail until it
# leaves the list.
MAX_LINES = 1000
MAX_METHODS = 50
RATCHET: dict[str, int] = {}
# "module:Class" -> methods it may not grow past, the same way
CLASS_RATCHET: dict[str, int] = {}


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_size(path: Path) -> None:
    relative = str(path.relative_to(SRC))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    if relative in RATCHET:
        assert lines > MAX_LINES, f"{relative} is {lines} lines now: take it off RATCHET"
        assert lines <= RATCHET[relative], f"{relative} grew to {lines} lines (ratchet {RATCHET[relative]})"
    else:
        assert lines <= MAX_LINES, (
            f"{relative} is {lines} lines (limit {MAX_LINES}): split it along its seams"
        )


def class_sizes(path: Path) -> dict[str, int]:
    """Methods (functions defined in the class body, properties included) per class of a module."""
    sizes: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            sizes[node.name] = sum(
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) for item in node.body
            )
    return sizes


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_methods_per_class(path: Path) -> None:
    relative = str(path.relative_to(SRC))
    sizes = class_sizes(path)
    for key, limit in CLASS_RATCHET.items():
        module, name = key.split(":")
        if module == relative:
            assert sizes.get(name, 0) > MAX_METHODS, (
                f"{key} has {sizes.get(name, 0)} methods: take it off CLASS_RATCHET"
            )
            assert sizes[name] <= limit, f"{key} grew to {sizes[name]} methods (ratchet {limit})"
    big = {
        name: n for name, n in sizes.items() if n > MAX_METHODS and f"{relative}:{name}" not in CLASS_RATCHET
    }
    assert not big, (
        f"{relative}: classes over {MAX_METHODS} methods: {big} (make them facades over components)"
    )


def test_the_size_checks_see_classes() -> None:
    sizes = class_sizes(SRC / "clock.py")
    assert sizes["ManualClock"] >= 5


# --- public names across packages ------------------------------------------------------------------------


def private_imports(path: Path) -> set[str]:
    """``podium.<pkg>._mod`` modules and ``_names`` a file imports from podium packages."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if not module.startswith("podium."):
                continue
            if any(part.startswith("_") for part in module.split(".")):
                found.add(module)
            found.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            )
        elif isinstance(node, ast.Import):
            found.update(
                alias.name
                for alias in node.names
                if alias.name.startswith("podium.") and any(p.startswith("_") for p in alias.name.split("."))
            )
    return found


def package_of(relative: str) -> str:
    return relative.split("/", 1)[0] if "/" in relative else ""


# file -> private names of other packages it still imports (to mend; mending one fails until it leaves here)
KNOWN_PRIVATE: dict[str, set[str]] = {}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_packages_use_each_others_public_names(path: Path) -> None:
    """A package imports another package's public names only: not its ``_modules`` nor its ``_names``."""
    relative = str(path.relative_to(SRC))
    own = package_of(relative)
    bad = {name for name in private_imports(path) if name.split(".")[1] != own}
    known = KNOWN_PRIVATE.get(relative, set())
    assert known <= bad, f"{relative} no longer imports {sorted(known - bad)}: take it off KNOWN_PRIVATE"
    assert not bad - known, f"{relative} imports private names of other packages: {sorted(bad - known)}"


def test_the_private_check_sees_private_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from podium.wire._http import HttpClient\nfrom podium.engine.engine import _Plan\n")
    assert private_imports(sample) == {"podium.wire._http", "podium.engine.engine._Plan"}


# --- the engine's surface to its siblings -----------------------------------------------------------------
# Other packages (server, workcell, cli, testing, ...) use the engine through these modules only; its
# components (core, keys, registry, transitions, retries, jobs, tasks, executor, recovery) are its own business
# and may be re-cut without touching a sibling.
ENGINE_SURFACE = {
    "podium.engine",
    "podium.engine.engine",
    "podium.engine.blueprint",
    "podium.engine.chain",
    "podium.engine.conditions",
    "podium.engine.config",
    "podium.engine.context",
    "podium.engine.definition",
    "podium.engine.dispatch",
    "podium.engine.errors",
    "podium.engine.models",
    "podium.engine.workers",
}


def engine_imports(path: Path) -> set[str]:
    """The ``podium.engine`` modules a file imports (``from podium.engine import x`` counts as the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found.update(n for n in names if n == "podium.engine" or n.startswith("podium.engine."))
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_siblings_use_the_engine_surface(path: Path) -> None:
    relative = str(path.relative_to(SRC))
    if package_of(relative) == "engine":
        return
    bad = {
        name
        for name in engine_imports(path)
        if name not in ENGINE_SURFACE and not name.startswith("podium.engine.storage")
    }
    assert not bad, f"{relative} imports engine internals {sorted(bad)}: use {sorted(ENGINE_SURFACE)}"


def test_the_surface_check_sees_engine_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "from podium.engine.tasks import X\nimport podium.engine.core\nfrom podium.engine import Y\n"
    )
    assert engine_imports(sample) == {"podium.engine.tasks", "podium.engine.core", "podium.engine"}
