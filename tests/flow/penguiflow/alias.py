"""An import hook that serves ``penguiflow`` (and ``penguiflow_a2a``) from ``podium.flow``.

``import penguiflow.core`` returns the module object ``podium.flow.core`` itself, so identities hold
(``penguiflow.core.PenguiFlow is podium.flow.core.Flow``) and module state is shared. Install it with
:func:`install` (the pytest plugin ``-p tests.flow.penguiflow.alias`` does so on load), or run a script
under it with ``python -m tests.flow.penguiflow.alias script.py``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import runpy
import sys
from types import ModuleType

ALIASES = {"penguiflow": "podium.flow", "penguiflow_a2a": "podium.flow.a2a"}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        return None  # the podium module is already executed


class AliasFinder(importlib.abc.MetaPathFinder):
    """Finds ``penguiflow[.x]`` as ``podium.flow[.x]`` (and only names podium has)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        root, _, rest = fullname.partition(".")
        if root not in ALIASES:
            return None
        name = ALIASES[root] + (f".{rest}" if rest else "")
        if importlib.util.find_spec(name) is None:
            return None
        module = importlib.import_module(name)
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(name), is_package=is_package)


# PenguiFlow's logger names -> podium's (tests set levels and capture by the PenguiFlow name)
LOGGERS = {"penguiflow.core": "podium.flow.core"}


def install() -> None:
    if not any(isinstance(finder, AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, AliasFinder())
    for name, target in LOGGERS.items():
        logging.Logger.manager.loggerDict[name] = logging.getLogger(target)


install()  # importing this module (also as a pytest plugin) installs the hook

if __name__ == "__main__":
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    runpy.run_path(script, run_name="__main__")
