"""A server with a blueprint and a remote worker in a separate process, end to end.

``python examples/server/run.py`` starts ``podium serve`` on a free port with this folder's blueprint,
starts ``worker.py`` as its own process, submits three jobs with the JobClient and prints their results.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from podium.client import JobClient

HERE = Path(__file__).resolve().parent
CLIENT_TOKEN, WORKER_TOKEN = "client-secret", "worker-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "CLIENT_TOKEN": CLIENT_TOKEN,
        "GLOBAL_WORKER_TOKEN": WORKER_TOKEN,
        "LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "podium", "serve", "--port", str(port), "--blueprints", str(HERE)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = None
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "podium serving on http://..." once it listens
        if not re.search(r"serving on", line):
            raise RuntimeError(f"server did not start: {line!r}")
        worker_env = {**env, "ORCHESTRATOR_URL": url, "WORKER_TOKEN": WORKER_TOKEN}
        worker = subprocess.Popen([sys.executable, str(HERE / "worker.py")], env=worker_env)
        with JobClient(url, token=CLIENT_TOKEN) as jobs:
            ids = [jobs.submit("transcode", {"path": f"/videos/{n}"}) for n in ("a", "b", "c")]
            started = time.monotonic()
            for job_id in ids:
                job = jobs.wait(job_id, timeout_s=30)
                print(f"{job_id} {job.status} -> {job.step}, progress {job.progress}")
            print(
                f"3 jobs in {time.monotonic() - started:.2f} s; workers: {[w.worker_id for w in jobs.workers()]}"
            )
        return 0
    finally:
        for proc in (worker, server):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
