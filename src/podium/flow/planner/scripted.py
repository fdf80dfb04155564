"""A scripted LLM client: replays authored replies, for tests, examples and benchmarks (no network)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["ScriptedLLM"]


class ScriptedLLM:
    """An ``llm_client`` that answers each call with the next reply (a mapping is sent as its JSON).

    ``calls`` keeps the messages of every call, so a test can read what the planner showed the LLM.
    Running out of replies raises ``RuntimeError`` naming how many were scripted.
    """

    def __init__(self, replies: Iterable[Mapping[str, Any] | str]) -> None:
        self._replies = [reply if isinstance(reply, str) else json.dumps(reply) for reply in replies]
        self._scripted = len(self._replies)
        self.calls: list[list[dict[str, str]]] = []

    async def complete(
        self, *, messages: Sequence[Mapping[str, str]], response_format: Mapping[str, Any] | None = None
    ) -> str:
        self.calls.append([dict(message) for message in messages])
        if not self._replies:
            raise RuntimeError(f"ScriptedLLM: all {self._scripted} scripted replies were used")
        return self._replies.pop(0)
