"""Fuzz the jobs server's API (``podium serve``) with schemathesis: every operation of its OpenAPI, with the
client's and a worker's valid tokens.

Starts ``podium serve`` on durable SQLite with a blueprint that dispatches a task and one that waits for an
approval, submits a job of each, and runs ``schemathesis run`` against ``/_public/openapi.json`` with the
checks ``not_a_server_error``, ``status_code_conformance`` and ``response_schema_conformance``
(:mod:`bench.schemathesis_run`). Long polls are asked with ``timeout=0``; the event stream is left out
(it never ends). Prints the schemathesis summary,
then one JSON line: requests sent, server errors (5xx), schema violations, the failures by check and
operation, and whether the server's log holds a traceback.

    python bench/fuzz_server.py --max-examples 8 --seed 1      # what CI runs (tests/server/test_fuzz.py)
    python bench/fuzz_server.py --max-examples 200 --seed 7    # longer, by hand
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_server import free_port, stop_all, wait_http  # noqa: E402
from bench.schemathesis_run import dictionary_config, fuzz_main, run_schemathesis  # noqa: E402

EXCLUDED = r"/v1/events$"
"""Left out: the live event stream (server-sent events) never ends, so a fuzzer's request only times out."""
CLIENT_TOKEN = "fuzz-client-token-0123456789"
WORKER_TOKEN = "fuzz-worker-token-0123456789"

BLUEPRINTS = """
from podium.engine import Blueprint

fuzz = Blueprint("fuzz", api_endpoint="/jobs/fuzz", api_version="v1")


@fuzz.handler(is_start=True)
async def start(actions):
    actions.dispatch_task("noop", {}, transitions={"success": "finished"})


@fuzz.handler(is_end=True)
async def finished():
    pass


review = Blueprint("review", api_endpoint="/jobs/review", api_version="v1")


@review.handler(is_start=True)
async def ask(actions):
    actions.await_human_approval(message="ok?", transitions={"approved": "done", "rejected": "refused"})


@review.handler(is_end=True)
async def done():
    pass


@review.handler(is_end=True)
async def refused():
    pass
"""


async def _seed(url: str) -> dict[str, list[str]]:
    """A job of each blueprint; the names and ids the fuzzer should try in path parameters, by dictionary."""
    import httpx

    async with httpx.AsyncClient(base_url=url, headers={"X-Client-Token": CLIENT_TOKEN}, timeout=30) as http:
        jobs = []
        for name in ("fuzz", "review"):
            r = await http.post(f"/api/v1/jobs/{name}", json={"initial_data": {"n": 1}})
            r.raise_for_status()
            jobs.append(r.json()["job_id"])
    return {
        "jobs": jobs,
        "blueprints": ["fuzz", "review"],
        "endpoints": ["fuzz", "review", "v1/fuzz"],
        "versions": ["v1"],
        "workers": ["w-fuzz"],
        "commands": ["drain", "shutdown"],
    }


_PATH_PARAMETERS = {
    "job_id": "jobs",
    "name": "blueprints",
    "endpoint": "endpoints",
    "version": "versions",
    "worker_id": "workers",
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
    """Serve the jobs API, run schemathesis against it, return the figures."""
    work = Path(tempfile.mkdtemp(prefix="podium-fuzz-server-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (work / "blueprints").mkdir()
    (work / "blueprints" / "fuzz_blueprints.py").write_text(BLUEPRINTS, encoding="utf-8")
    log = (work / "server.log").open("w")
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "RATE_LIMITING_ENABLED": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [
        sys.executable,
        "-m",
        "podium",
        "serve",
        "--port",
        str(port),
        "--blueprints",
        str(work / "blueprints"),
    ]
    argv += ["--storage", f"sqlite:///{work}/podium.db"]
    server = subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    figures: dict[str, Any] = {}
    try:
        await wait_http(f"{url}/_public/health")
        figures.update(
            await run_schemathesis(
                f"{url}/_public/openapi.json",
                dictionary_config(await _seed(url), _PATH_PARAMETERS, {"query.timeout": 0}),
                [f"X-Client-Token: {CLIENT_TOKEN}", f"X-Worker-Token: {WORKER_TOKEN}"],
                work,
                max_examples=max_examples,
                seed=seed,
                workers=workers,
                max_time_s=max_time_s,
                phases=phases,
                exclude_paths=EXCLUDED,
                echo=echo,
            )
        )
        figures["server_alive"] = server.poll() is None
    finally:
        stop_all([server])
        log.close()
        text = (work / "server.log").read_text(encoding="utf-8", errors="replace")
        figures["server_tracebacks"] = text.count("Traceback")
        if echo and figures["server_tracebacks"]:  # the log lines that hold one
            print("\n".join(line[:3000] for line in text.splitlines() if "Traceback" in line))
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":
    fuzz_main("fuzz_server", __doc__, fuzz)
