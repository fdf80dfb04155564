"""A stub RXON server: answers a worker SDK's register, heartbeat, poll and result calls at once.

``python -m bench.rxon_stub PORT`` serves until killed (on uvloop where it is installed, as ``podium serve``
runs). Two ways to drive it:

- armed tasks: ``GET /arm?n=N`` makes the next ``N`` polls get a ``noop`` task straight away (polls wait
  while nothing is armed, as a long poll does), and ``GET /wait`` answers once ``N`` results came back, with
  the seconds from arming to the last result. With workers that answer at once, that is how fast the worker
  SDK itself goes on this machine: the limit of any server it talks to.
- jobs, as a client sees them: ``POST /api/v1/jobs/{name}`` (202, ``{"job_id", "status"}``) queues one
  ``noop`` task for the next worker poll, ``GET /api/v1/jobs/{id}`` answers its status from a dict
  (``pending``, ``running``, then ``finished`` once its result came back). No store, no history, no
  checks: what a server costs at the least with a polling client beside the workers, so its jobs/s is the
  limit of that whole setup on this machine (workers, client and server sharing its cores).
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from urllib.parse import parse_qs

from bench.rawhttp import serve

__all__ = ["Stub"]


class Stub:
    """The stub's state; :meth:`handle` is its one route table."""

    def __init__(self) -> None:
        self.budget = 0
        self.target = 0
        self.results = 0
        self.seq = 0
        self.armed = asyncio.Condition()
        self.done = asyncio.Event()
        self.t0 = self.t1 = 0.0
        self.workers: dict[str, float] = {}
        self.jobs: dict[str, str] = {}  # job id -> status (jobs mode)
        self.queued: collections.deque[str] = collections.deque()  # jobs whose task no worker took yet

    async def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, bytes]:
        path, _, query = target.decode().partition("?")
        if method == b"GET" and path.endswith("/tasks/next"):
            return await self.next_task(path.split("/")[3], parse_qs(query))
        if path.startswith("/api/v1/jobs/"):
            return await self.job_route(method, path[len("/api/v1/jobs/") :])
        if method == b"POST" and path == "/_worker/tasks/result":
            job_id = json.loads(body).get("job_id")
            if job_id in self.jobs:
                self.jobs[job_id] = "finished"
                return 200, b'{"status":"accepted"}'
            self.results += 1
            if self.results == self.target:
                self.t1 = time.perf_counter()
                self.done.set()
            return 200, b'{"status":"accepted"}'
        if method == b"PATCH":
            return 200, b"{}"
        if method == b"POST" and path == "/_worker/workers/register":
            self.workers[json.loads(body)["worker_id"]] = time.time()
            return 200, b'{"status":"registered"}'
        if path == "/api/v1/workers":
            return 200, json.dumps([{"worker_id": w} for w in self.workers]).encode()
        if path == "/arm":
            n = int(parse_qs(query)["n"][0])
            self.budget, self.target, self.results = n, n, 0
            self.done.clear()
            self.t0 = time.perf_counter()
            async with self.armed:
                self.armed.notify_all()
            return 200, b"{}"
        if path == "/wait":
            await self.done.wait()
            return 200, json.dumps({"elapsed_s": self.t1 - self.t0, "results": self.results}).encode()
        return 200, b'{"status":"ok"}'

    async def job_route(self, method: bytes, rest: str) -> tuple[int, bytes]:
        """Jobs mode: submit (``POST``, any blueprint name) or read a job's status (``GET``)."""
        if method == b"POST":
            self.seq += 1
            job_id = f"job-{self.seq}"
            self.jobs[job_id] = "pending"
            self.queued.append(job_id)
            async with self.armed:
                self.armed.notify(1)
            return 202, json.dumps({"job_id": job_id, "status": "pending"}).encode()
        status = self.jobs.get(rest)
        if status is None:
            return 404, b'{"error":"job not found"}'
        return 200, json.dumps({"id": rest, "status": status}).encode()

    async def next_task(self, worker_id: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        timeout_s = float(query.get("timeout", ["30"])[0])
        if self.budget <= 0 and not self.queued:
            try:
                async with self.armed:
                    await asyncio.wait_for(
                        self.armed.wait_for(lambda: self.budget > 0 or bool(self.queued)), timeout_s
                    )
            except TimeoutError:
                return 204, b""
        self.seq += 1
        if self.queued:
            job_id = self.queued.popleft()
            self.jobs[job_id] = "running"
        else:
            self.budget -= 1
            job_id = f"j{self.seq}"
        task = {"job_id": job_id, "task_id": f"t{self.seq}", "type": "noop", "params": {}}
        return 200, json.dumps(task).encode()


async def main(port: int) -> None:
    stub = Stub()
    server = await serve(stub.handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux and macOS
        asyncio.run(main(int(sys.argv[1])))
    else:
        uvloop.run(main(int(sys.argv[1])))
