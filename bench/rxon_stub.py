"""A stub RXON server: answers a worker SDK's register, heartbeat, poll and result calls at once.

``python -m bench.rxon_stub PORT`` serves until killed. It holds no jobs: ``GET /arm?n=N`` makes the next
``N`` polls get a ``noop`` task straight away (polls wait while nothing is armed, as a long poll does), and
``GET /wait`` answers once ``N`` results came back, with the seconds from arming to the last result. With
workers that answer at once, that is how fast the worker SDK itself goes on this machine: the limit of
any server it talks to.
"""

from __future__ import annotations

import asyncio
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

    async def handle(
        self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes
    ) -> tuple[int, bytes]:
        path, _, query = target.decode().partition("?")
        if method == b"GET" and path.endswith("/tasks/next"):
            return await self.next_task(path.split("/")[3], parse_qs(query))
        if method == b"POST" and path == "/_worker/tasks/result":
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

    async def next_task(self, worker_id: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        timeout_s = float(query.get("timeout", ["30"])[0])
        if self.budget <= 0:
            try:
                async with self.armed:
                    await asyncio.wait_for(self.armed.wait_for(lambda: self.budget > 0), timeout_s)
            except TimeoutError:
                return 204, b""
        self.budget -= 1
        self.seq += 1
        task = {"job_id": f"j{self.seq}", "task_id": f"t{self.seq}", "type": "noop", "params": {}}
        return 200, json.dumps(task).encode()


async def main(port: int) -> None:
    stub = Stub()
    server = await serve(stub.handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
