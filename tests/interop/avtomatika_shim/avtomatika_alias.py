"""A pytest plugin (``-p avtomatika_alias``) that makes ``import avtomatika...`` import ``podium.engine...``.

Used by ``tests/interop/avtomatika_suite.py`` to run Avtomatika 1.0b30's own tests against podium. A meta-path
finder placed first on ``sys.meta_path`` answers for:

- ``avtomatika`` and ``avtomatika.<sub>`` -> ``podium.engine`` and ``podium.engine.<sub>``;
- ``src.avtomatika...`` (some of its tests import the package through its source folder) -> the same;
- ``fast_filter`` (the library Avtomatika's ``F`` comes from; some tests import ``F`` from it directly)
  -> ``podium.engine.conditions``, podium's own ``F``.

The aliased name is bound to the very module object of podium (no copy), so ``unittest.mock.patch`` on an
``avtomatika.x`` name patches podium's module. Nothing of Avtomatika's own code is importable: the runner
extracts only its tests.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence

ALIASES = {
    "avtomatika": "podium.engine",
    "src.avtomatika": "podium.engine",
    "fast_filter": "podium.engine.conditions",
}


def target_of(fullname: str) -> str | None:
    """The podium module an aliased name stands for (``None`` if the name is not aliased)."""
    for alias, target in ALIASES.items():
        if fullname == alias:
            return target
        if fullname.startswith(alias + "."):
            return target + fullname[len(alias) :]
    return None


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str | None) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        if self.target is None:  # the bare ``src`` package: an empty namespace
            module = types.ModuleType(spec.name)
            module.__path__ = []
            return module
        return importlib.import_module(self.target)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class AliasFinder(importlib.abc.MetaPathFinder):
    """Finds aliased names before any other finder does."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == "src":
            return importlib.machinery.ModuleSpec(fullname, _AliasLoader(None), is_package=True)
        real = target_of(fullname)
        if real is None:
            return None
        try:
            found = importlib.util.find_spec(real)
        except ModuleNotFoundError:
            found = None
        if found is None:
            return None  # podium has no such module: the import fails as it would for a missing one
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real), is_package=True)


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())


install()
