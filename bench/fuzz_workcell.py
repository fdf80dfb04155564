"""Fuzz the workcell API with schemathesis: every operation of its OpenAPI but the live event stream, with
a valid token.

Serves a workcell (SQLite data folder, the simulated instruments over HTTP, a stored definition, a
finished and a queued workflow, a consumable) on a loopback port and runs ``schemathesis run`` against
it (every operation but :data:`EXCLUDED`) with the checks ``not_a_server_error``,
``status_code_conformance`` and ``response_schema_conformance``. Prints the schemathesis summary, then one
JSON line: requests sent, server errors (5xx), schema violations, and the failures by check and operation.

    python bench/fuzz_workcell.py --max-examples 20 --seed 1     # what CI runs (tests/workcell/test_fuzz.py)
    python bench/fuzz_workcell.py --max-examples 1000 --seed 7   # longer, by hand
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.schemathesis_run import dictionary_config, fuzz_main, run_schemathesis  # noqa: E402

TOKEN = "fuzz-token-0123456789"
EXCLUDED = r"^/events$"
"""Left out: the dashboard's live event stream (server-sent events) never ends, so a fuzzer's request only
waits for its timeout (three such requests were 213 of the run's 222 s)."""


async def _seed(url: str) -> dict[str, list[str]]:
    """Something for the routes to find: a definition, a finished run, a consumable. Returns the names and
    ids the fuzzer should try in path parameters, by dictionary."""
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        definition = {
            "name": "fuzz",
            "parameters": [{"key": "volume", "default": 10}],
            "steps": [
                {"name": "home", "key": "home", "node": "robotarm_1", "action": "home"},
                {
                    "name": "aspirate",
                    "node": "liquidhandler_1",
                    "action": "aspirate",
                    "args": {"volume_ul": 5},
                },
            ],
        }
        def_id = (await http.post("/workflow_definition", json=definition)).json()
        r = await http.post("/workflow", data={"workflow_definition_id": def_id})
        r.raise_for_status()
        await http.get(f"/workflow/{r.json()['workflow_id']}", params={"wait_s": 10, "until": "terminal"})
        tips = {"resource_name": "tips", "base_type": "discrete_consumable", "quantity": 10, "capacity": 96}
        (await http.post("/resource", json=tips)).raise_for_status()
        return {
            "nodes": sorted((await http.get("/nodes")).json()),
            "workflows": [r.json()["workflow_id"]],
            "definitions": [def_id],
            "resources": ["tips", *[loc["location_name"] for loc in (await http.get("/locations")).json()]],
            "datapoints": sorted((await http.get("/datapoints")).json()) or ["none"],
            "commands": ["reset", "lock", "unlock", "pause", "resume", "cancel"],
        }


_PATH_PARAMETERS = {
    "node_name": "nodes",
    "node": "nodes",
    "workflow_id": "workflows",
    "definition_id": "definitions",
    "ref": "resources",
    "container": "resources",
    "datapoint_id": "datapoints",
    "command": "commands",
}


async def fuzz(
    *,
    max_examples: int,
    seed: int,
    workers: int = 1,
    max_time_s: float | None = None,
    phases: str = "examples,coverage,fuzzing",
    echo: bool = True,
) -> dict[str, Any]:
    """Serve a workcell, run schemathesis against it, return the figures."""
    from podium.nodes import serve_nodes
    from podium.nodes.sim import make_sim_nodes
    from podium.workcell.server import build_engine, create_app, serve_asgi

    work = Path(tempfile.mkdtemp(prefix="podium-fuzz-"))
    try:
        nodes = make_sim_nodes(default_duration_s=0.0, work_dir=work / "nodes")
        async with serve_nodes(nodes) as urls:
            engine = build_engine(
                None,
                data_dir=work / "data",
                nodes=dict(urls),
                scheduler_update_interval=5.0,
                node_update_interval=5.0,
            )
            # Long polls (wait_s up to 60 s) are held 0.2 s at most: the fuzzer tries many.
            app = create_app(engine, api_tokens=[TOKEN], max_wait_s=0.2)
            async with serve_asgi(app) as url:
                return await run_schemathesis(
                    f"{url}/openapi.json",
                    dictionary_config(await _seed(url), _PATH_PARAMETERS),
                    [f"Authorization: Bearer {TOKEN}"],
                    work,
                    max_examples=max_examples,
                    seed=seed,
                    workers=workers,
                    max_time_s=max_time_s,
                    phases=phases,
                    exclude_paths=EXCLUDED,
                    echo=echo,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    fuzz_main("fuzz_workcell", __doc__, fuzz)
