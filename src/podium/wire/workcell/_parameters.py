"""Workflow parameters: the models (MADSci 0.7 list form and 0.8 typed form) and ``${name}`` substitution.

A parameter is a JSON input (with an optional default), a file input, or a feed-forward value taken from a
datapoint produced by an earlier step. Substitution is a parser over strings, never ``eval``: a string that
is exactly ``${name}`` or ``$name`` becomes the value itself (keeping its type); a reference inside a longer
string is replaced by the value's text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Discriminator, Field, model_validator

from podium.wire.workcell._base import InputModel

__all__ = [
    "ParameterFeedForwardFile",
    "ParameterFeedForwardJson",
    "ParameterInputFile",
    "ParameterInputJson",
    "ParameterTypes",
    "WorkflowParameters",
    "find_references",
    "substitute",
]


class _Parameter(InputModel):
    key: str = Field(validation_alias=AliasChoices("key", "name"))
    description: str | None = None


class ParameterInputJson(_Parameter):
    """A JSON value given at submission; ``default`` is used when none is given."""

    parameter_type: Literal["json_input"] = "json_input"
    default: Any = None


class ParameterInputFile(_Parameter):
    """A file uploaded with the submission."""

    parameter_type: Literal["file_input"] = "file_input"


class ParameterFeedForwardJson(_Parameter):
    """A JSON value taken from a datapoint of an earlier step (by step index or key, and/or label)."""

    parameter_type: Literal["feed_forward_json"] = "feed_forward_json"
    step: int | str | None = None
    label: str | None = None
    data_type: Literal["json"] = "json"

    @model_validator(mode="after")
    def _needs_source(self) -> ParameterFeedForwardJson:
        if self.step is None and self.label is None:
            raise ValueError(f"feed-forward parameter {self.key!r} needs a 'step' or a 'label'")
        return self


class ParameterFeedForwardFile(_Parameter):
    """A file taken from a datapoint of an earlier step."""

    parameter_type: Literal["feed_forward_file"] = "feed_forward_file"
    step: int | str | None = None
    label: str | None = None
    data_type: Literal["file", "object_storage"] = "file"

    @model_validator(mode="after")
    def _needs_source(self) -> ParameterFeedForwardFile:
        if self.step is None and self.label is None:
            raise ValueError(f"feed-forward parameter {self.key!r} needs a 'step' or a 'label'")
        return self


ParameterTypes = Annotated[
    ParameterInputJson | ParameterInputFile | ParameterFeedForwardJson | ParameterFeedForwardFile,
    Discriminator("parameter_type"),
]

_FILE_DATA_TYPES = {"file", "object_storage"}
_SIMPLE_TYPES = {"file": "file_input", "file_input": "file_input", "input_file": "file_input"}


def coerce_parameter(item: Any) -> Any:
    """Turn the 0.7 form ``{name, default}`` (and ``type: file``) into the typed 0.8 form."""
    if isinstance(item, Mapping) and "parameter_type" not in item:
        item = dict(item)
        kind = str(item.pop("type", "") or "").lower().strip()
        if "step" in item or "label" in item:
            # MADSci picks the feed-forward kind from ``data_type`` when no ``parameter_type`` is given.
            is_file = kind in _SIMPLE_TYPES or str(item.get("data_type", "")).lower() in _FILE_DATA_TYPES
            item["parameter_type"] = "feed_forward_file" if is_file else "feed_forward_json"
        else:
            item["parameter_type"] = _SIMPLE_TYPES.get(kind, "json_input")
        if item["parameter_type"] == "file_input":
            item.pop("default", None)
    return item


def _typed(item: Any, kind: str) -> Any:
    if kind and isinstance(item, Mapping) and "parameter_type" not in item:
        return {**item, "parameter_type": kind}
    return item


class WorkflowParameters(InputModel):
    """All parameters of a workflow, by kind."""

    json_inputs: list[ParameterInputJson] = Field(
        default_factory=list, validation_alias=AliasChoices("json_inputs", "value_inputs", "json", "inputs")
    )
    file_inputs: list[ParameterInputFile] = Field(
        default_factory=list, validation_alias=AliasChoices("file_inputs", "files")
    )
    feed_forward: list[ParameterFeedForwardJson | ParameterFeedForwardFile] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, data: Any) -> Any:
        if isinstance(data, list):
            grouped: dict[str, list[Any]] = {"json_inputs": [], "file_inputs": [], "feed_forward": []}
            for raw in data:
                item = coerce_parameter(raw)
                kind = item.get("parameter_type") if isinstance(item, Mapping) else None
                if kind is None and isinstance(raw, _Parameter):
                    item, kind = raw.model_dump(), raw.model_dump()["parameter_type"]
                target = {"json_input": "json_inputs", "file_input": "file_inputs"}.get(
                    str(kind), "feed_forward"
                )
                grouped[target].append(item)
            return grouped
        if isinstance(data, Mapping):
            data = dict(data)
            for key in (
                "json_inputs",
                "value_inputs",
                "json",
                "inputs",
                "file_inputs",
                "files",
                "feed_forward",
            ):
                if isinstance(data.get(key), list):
                    kind = {"file_inputs": "file_input", "files": "file_input", "feed_forward": ""}.get(
                        key, "json_input"
                    )
                    data[key] = [coerce_parameter(_typed(v, kind)) for v in data[key]]
        return data

    @model_validator(mode="after")
    def _unique(self) -> WorkflowParameters:
        seen: set[str] = set()
        for param in self.all():
            if param.key in seen:
                raise ValueError(f"parameter key {param.key!r} is defined twice")
            seen.add(param.key)
        return self

    def all(self) -> list[_Parameter]:
        """Every parameter, JSON inputs first."""
        return [*self.json_inputs, *self.file_inputs, *self.feed_forward]

    def key_set(self) -> set[str]:
        """Every parameter key."""
        return {p.key for p in self.all()}

    def feed_forward_keys(self) -> set[str]:
        """Keys of the parameters whose values come from earlier steps."""
        return {p.key for p in self.feed_forward}


_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.-]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def find_references(value: Any) -> set[str]:
    """Every parameter name referenced as ``${name}`` or ``$name`` inside ``value`` (recursively)."""
    found: set[str] = set()
    if isinstance(value, str):
        for m in _REF.finditer(value):
            found.add(m.group(1) or m.group(2))
    elif isinstance(value, Mapping):
        for v in value.values():
            found |= find_references(v)
    elif isinstance(value, list | tuple):
        for v in value:
            found |= find_references(v)
    return found


def substitute(value: Any, values: Mapping[str, Any]) -> Any:
    """Replace ``${name}``/``$name`` by ``values[name]`` throughout ``value`` (recursively).

    Names not in ``values`` are left as written; the caller
    validates unknown names beforehand. A string that is a single reference becomes the raw value.
    """
    if isinstance(value, str):
        whole = _REF.fullmatch(value)
        if whole is not None:
            name = whole.group(1) or whole.group(2)
            return values.get(name, value)

        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            return str(values[name]) if name in values else m.group(0)

        return _REF.sub(repl, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, values) for v in value]
    return value
