"""Avtomatika 1.0b30's README examples, run unchanged on podium (started by ``test_avtomatika_examples.py``).

``python avtomatika_examples_app.py <README.md>`` installs the ``avtomatika`` -> ``podium.engine`` import hook,
executes the README's quick start (its ``engine``, ``bp`` and ``main``) and the cookbook recipes 1-3 and the
dependency-injection example exactly as written, each recipe in its own namespace with its own ``bp``, adds
only the glue states a fragment leaves out (a start state leading to the recipe's first handler, end states
for the targets it names), registers them on the quick start's engine and runs the quick start's ``main()``
(``await engine.start()`` serving the HTTP API on ``API_HOST``/``API_PORT``).
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent / "avtomatika_shim"))
import avtomatika_alias  # noqa: F401  (installs the import hook)
from avtomatika import Blueprint

# recipe heading -> (its first state, end states it leads to but does not define)
RECIPES: dict[str, tuple[str, list[str]]] = {
    "### 1. Conditional Transitions": (
        "decision_step",
        ["urgent_processing", "priority_lane", "normal_processing"],
    ),
    "### 2. Delegating Tasks to Workers": (
        "transcode_video",
        ["complete", "transcoding_failed", "manual_review"],
    ),
    "### 3. Parallel Execution and Aggregation": ("process_files", ["processing_complete"]),
}
DI_EXAMPLE = "### Example: Dependency Injection"


def python_block(readme: str, heading: str) -> str:
    """The first ```python block after ``heading``."""
    start = readme.index(heading)
    match = re.search(r"```python\n(.*?)```", readme[start:], re.S)
    assert match is not None, heading
    return match.group(1)


def recipe_blueprint(readme: str, index: int, heading: str, first: str, ends: list[str]) -> Blueprint:
    bp = Blueprint(name=f"recipe_{index}", api_version="v1", api_endpoint=f"/jobs/recipe_{index}")
    namespace: dict[str, Any] = {"bp": bp, "__name__": f"recipe_{index}"}
    if index == 2:  # the README's DI example defines publish_video, the state recipe 2 leads to
        exec(
            compile(
                "from avtomatika import ActionFactory\n" + python_block(readme, DI_EXAMPLE), "di", "exec"
            ),
            namespace,
        )
    exec(compile(python_block(readme, heading), f"recipe_{index}", "exec"), namespace)

    @bp.handler(is_start=True)
    async def glue_start(actions: Any) -> None:
        actions.go_to(first)

    glue_start.__name__ = "glue_start"
    for end in ends:
        bp.add_state(end, _end, is_end=True)
    return bp


async def _end() -> None:
    return None


def main() -> None:
    readme = Path(sys.argv[1]).read_text()
    quick_start: dict[str, Any] = {"__name__": "my_app"}  # not __main__: its own guard does not run
    exec(compile(python_block(readme, "## Quick Start: Usage as a Library"), "my_app", "exec"), quick_start)
    engine = quick_start["engine"]
    for index, (heading, (first, ends)) in enumerate(RECIPES.items(), start=1):
        engine.register_blueprint(recipe_blueprint(readme, index, heading, first, ends))
    print("READY", flush=True)
    asyncio.run(quick_start["main"]())


if __name__ == "__main__":
    main()
