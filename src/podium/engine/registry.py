"""Job definitions: registered blueprints, definition factories, API endpoints, blueprint loading, graphs.

Owns the name -> definition lookup and input validation against a definition's schema. It must not touch
the store, the clock or any job: it is pure bookkeeping of definitions.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from podium.engine.definition import JobDefinition
from podium.engine.errors import BlueprintError, BlueprintNotFoundError, InputValidationError
from podium.engine.schema import SchemaError, validate_data

__all__ = ["Registry", "validated_input"]


def validated_input(definition: JobDefinition, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` checked against the definition's ``input_schema`` (a copy, the job's own)."""
    if definition.input_schema is None:
        return dict(data)  # nothing to validate: one copy, the job's own
    try:
        out = validate_data(definition.input_schema, dict(data))
    except SchemaError as exc:
        raise InputValidationError(str(exc).split(": ", 1)[-1], field=exc.field) from None
    return dict(out)


def _endpoint_key(endpoint: str) -> str:
    return "/" + endpoint.strip("/")


class Registry:
    """The definitions an engine runs: by name, by API endpoint, or built by a factory on first use."""

    def __init__(self) -> None:
        self.blueprints: dict[str, JobDefinition] = {}
        self._factories: list[tuple[str, Callable[[str], JobDefinition]]] = []
        self._made: dict[str, JobDefinition] = {}  # definitions built by a factory (not API blueprints)
        self._endpoints: dict[str, str] = {}

    def register_definition(self, definition: JobDefinition) -> None:
        """Register any job definition (a blueprint, or one built in code)."""
        definition.validate()
        if definition.name in self.blueprints and self.blueprints[definition.name] is not definition:
            raise BlueprintError(f"a definition named {definition.name!r} is already registered")
        self.blueprints[definition.name] = definition
        if definition.api_endpoint:
            self._endpoints[_endpoint_key(definition.api_endpoint)] = definition.name

    def register_definition_factory(self, prefix: str, factory: Callable[[str], JobDefinition]) -> None:
        """Build definitions whose name starts with ``prefix`` with ``factory(name)`` on first use."""
        self._factories.append((prefix, factory))

    def definition(self, name: str) -> JobDefinition | None:
        """The definition registered (or built by a factory) under ``name``, or ``None``."""
        d = self.blueprints.get(name) or self._made.get(name)
        if d is None:
            for prefix, factory in self._factories:
                if name.startswith(prefix):
                    d = factory(name)
                    d.validate()
                    self._made[name] = d
                    break
        return d

    def get_definition(self, name_or_endpoint: str) -> JobDefinition:
        """The definition registered under a name or an API endpoint (``/jobs/my_flow``)."""
        d = self.definition(name_or_endpoint)
        if d is None:
            name = self._endpoints.get(_endpoint_key(name_or_endpoint))
            d = self.blueprints.get(name) if name else None
        if d is None:
            raise BlueprintNotFoundError(f"no blueprint named or served at {name_or_endpoint!r}")
        return d

    def load_blueprints(self, directory: str | Path) -> list[str]:
        """Import every ``.py`` file in ``directory`` and register each Blueprint/definition it defines."""
        found: list[str] = []
        for path in sorted(Path(directory).glob("*.py")):
            mod_name = f"podium_blueprints_{path.stem}"
            spec = importlib.util.spec_from_file_location(mod_name, path)
            if spec is None or spec.loader is None:
                continue
            module = importlib.util.module_from_spec(spec)
            sys.modules[mod_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                raise BlueprintError(f"{path}: failed to import: {exc}") from exc
            for value in vars(module).values():
                if isinstance(value, JobDefinition) and value.name not in self.blueprints:
                    self.register_definition(value)
                    found.append(value.name)
        return found

    def blueprint_graph(self, name: str) -> str:
        """The definition's state graph as Mermaid text."""
        return self.get_definition(name).mermaid()
