"""Benchmark the A2A ``message/send`` round trip on loopback, podium's adapter vs PenguiFlow 2.2.5's.

    .venv/bin/python bench/bench_a2a.py                # both (PenguiFlow's venv with its a2a-server extra)
    .venv/bin/python bench/bench_a2a.py --podium-only

Each side serves the same one-node echo flow with its own adapter under uvicorn (asyncio loop and h11 on
both sides), in its own process (this file is the server too, ``--serve penguiflow|podium``); the client
here sends ``message/send`` requests one at a time on one keep-alive connection (one write per request,
TCP_NODELAY) and times each round trip. Sides alternate over ``--rounds``; each figure is the best round's. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PEER = ("penguiflow-a2a", ["penguiflow[a2a-server]==2.2.5", "uvicorn"])
MODULES = {
    "penguiflow": ("penguiflow", "penguiflow_a2a"),
    "podium": ("podium.flow", "podium.flow.a2a"),
}


def serve(side: str) -> None:
    import importlib

    import uvicorn

    flow_mod, a2a_mod = (importlib.import_module(name) for name in MODULES[side])
    a2a = a2a_mod

    async def echo(message: Any, _ctx: Any) -> dict[str, Any]:
        return {"echo": message.payload["q"]}

    flow = flow_mod.create(flow_mod.Node(echo, name="echo", policy=flow_mod.NodePolicy(validate="none")).to())
    card = a2a.A2AAgentCard(name="echo", description="echo agent")
    app = a2a.create_a2a_app(
        a2a.A2AServerAdapter(flow, agent_card=card, agent_url="http://echo"), include_docs=False
    )
    sock = socket.socket(
        socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )  # IPPROTO_TCP: asyncio sets TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    # the same server stack on both sides (the peer venv has neither uvloop nor httptools)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", loop="asyncio", http="h11"
    )
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


class _Connection:
    """A keep-alive HTTP/1.1 connection that writes each request in one send, with TCP_NODELAY.

    (httpx writes headers and body separately; on loopback that meets delayed ACKs and adds ~40 ms to
    every request on both sides, which would hide what is measured.)
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reader.close()
        self.sock.close()

    def post(self, path: str, body: bytes) -> bytes:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body)
        status = self.reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"unexpected status {status!r}")
        length = 0
        while (line := self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return self.reader.read(length)


def measure(python: str, side: str, requests: int) -> dict[str, float]:
    import httpx

    env = dict(os.environ)
    if side == "podium":
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [python, str(Path(__file__).resolve()), "--serve", side]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd="/")
    try:
        assert process.stdout is not None
        url = f"http://127.0.0.1:{int(process.stdout.readline())}"
        body = json.dumps({"payload": {"q": "ping"}, "headers": {"tenant": "bench"}}).encode()
        for _ in range(200):  # until uvicorn serves
            try:
                if httpx.get(f"{url}/agent", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                continue
        samples: list[float] = []
        with _Connection(url) as connection:
            for index in range(requests + requests // 10):
                start = time.perf_counter()
                reply = json.loads(connection.post("/message/send", body))
                elapsed = (time.perf_counter() - start) * 1000
                assert reply["status"] == "succeeded" and reply["output"] == {"echo": "ping"}, reply
                if index >= requests // 10:  # the first tenth warms up
                    samples.append(elapsed)
        samples.sort()
        return {"p50_ms": statistics.median(samples), "p90_ms": samples[int(len(samples) * 0.9)]}
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--podium-only", action="store_true", help="skip PenguiFlow (no venv, no network)")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--serve", choices=sorted(MODULES), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    sides = {"podium": sys.executable}
    if not args.podium_only:
        sys.path.insert(0, str(ROOT))
        from bench.peervenv import peer_python

        sides = {"penguiflow": str(peer_python(*PEER)), **sides}
    results: dict[str, dict[str, float]] = {}
    for _round in range(args.rounds):
        for side, python in sides.items():
            figures = measure(python, side, args.requests)
            best = results.setdefault(side, figures)
            for key, value in figures.items():
                best[key] = min(best[key], value)
    print(f"{'A2A message/send round trip, loopback':<40} {'penguiflow':>11} {'podium':>9} {'podium/pf':>10}")
    ratios = {}
    for key in ("p50_ms", "p90_ms"):
        ours = results["podium"][key]
        theirs = results["penguiflow"][key] if "penguiflow" in results else math.nan
        ratios[key] = ours / theirs if theirs == theirs else math.nan
        print(f"{key:<40} {theirs:>11.3f} {ours:>9.3f} {ratios[key]:>10.3g}")
    print(json.dumps({"results": results, "ratios": ratios}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
