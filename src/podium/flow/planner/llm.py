"""Talking to the LLM: the LiteLLM client (extra ``llm``, imported on first call) and reading its actions.

:func:`parse_action` is pure: the raw reply in, a :class:`PlannerAction` or the validation error text out.
Before giving up on a reply it repairs what LLMs commonly wrap around JSON (a Markdown code fence, prose
before or after the object); what is still invalid goes back to the LLM with the error (the planner's
``repair_attempts``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from .models import PlannerAction

__all__ = ["LiteLLMJSONClient", "PlannerLLMError", "errors_json", "parse_action"]

_LITELLM_MISSING = (
    "LiteLLM is not installed: pip install 'podium[llm]' (or pass llm_client= with an object that has "
    "`async complete(*, messages, response_format=None) -> str`)"
)


class PlannerLLMError(RuntimeError):
    """The LLM could not be called, or gave no usable planner action after every repair attempt."""


class LiteLLMJSONClient:
    """A JSON-mode chat client over ``litellm.acompletion`` (``llm`` is a model name or its parameters)."""

    def __init__(self, llm: str | Mapping[str, Any], *, temperature: float, json_schema_mode: bool) -> None:
        self._llm = llm
        self._temperature = temperature
        self._json_schema_mode = json_schema_mode

    async def complete(
        self, *, messages: Sequence[Mapping[str, str]], response_format: Mapping[str, Any] | None = None
    ) -> str:
        try:
            import litellm
        except ModuleNotFoundError as exc:
            raise PlannerLLMError(_LITELLM_MISSING) from exc
        params: dict[str, Any] = {"model": self._llm} if isinstance(self._llm, str) else dict(self._llm)
        params.setdefault("temperature", self._temperature)
        params["messages"] = list(messages)
        if self._json_schema_mode and response_format is not None:
            params["response_format"] = response_format
        response = await litellm.acompletion(**params)
        content = response["choices"][0]["message"]["content"]
        if content is None:
            raise PlannerLLMError(f"LiteLLM returned an empty reply (model {params.get('model')!r})")
        return str(content)


def errors_json(exc: ValidationError) -> str:
    """A validation error as the JSON PenguiFlow shows the LLM (values JSON cannot hold as their ``str``)."""
    return json.dumps(exc.errors(), ensure_ascii=False, default=str)


def _json_object_in(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text`` (strings and escapes respected), or ``None``."""
    start = text.find("{")
    while start != -1:
        depth = 0
        in_string = escaped = False
        for index in range(start, len(text)):
            char = text[index]
            if in_string:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    in_string = False
            elif char == '"':
                in_string = True
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    candidate = text[start : index + 1]
                    try:
                        json.loads(candidate)
                    except ValueError:
                        break
                    return candidate
        start = text.find("{", start + 1)
    return None


# PlannerAction.model_validate_json without pydantic's wrapper (PlannerAction overrides nothing)
_read_action: Callable[[str], PlannerAction] = PlannerAction.__pydantic_validator__.validate_json


def parse_action(raw: Any) -> PlannerAction | str:
    """Read the LLM's reply as a :class:`PlannerAction`; on failure return the error text to show it."""
    if type(raw) is str:  # the usual reply
        text = raw
    elif isinstance(raw, Mapping):
        try:
            return PlannerAction.model_validate(dict(raw))
        except ValidationError as exc:
            return errors_json(exc)
    elif isinstance(raw, str | bytes):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    else:
        return f"expected a JSON object as text, got {type(raw).__name__}"
    try:
        return _read_action(text)
    except ValidationError as exc:
        error = errors_json(exc)
    candidate = _json_object_in(text)
    if candidate is not None and candidate != text.strip():
        try:
            return PlannerAction.model_validate_json(candidate)
        except ValidationError:
            pass
    return error
