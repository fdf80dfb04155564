"""What a Redis restart keeps (docs/deploy.md): a private ``redis-server`` killed with SIGKILL and started
again on the same files, with the store instances staying open across it."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from podium.clock import ManualClock
from podium.store import Store, open_store

SERVER = shutil.which("redis-server")

Restart = Callable[[], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Callable[..., tuple[str, Restart]]:
    """Start a private redis-server with the given persistence; return its URL and a kill-9-and-restart."""
    if SERVER is None:  # the drill needs a server of its own to kill, not the shared service
        pytest.skip("skip: no redis-server binary on PATH to run a private server")
    procs: list[subprocess.Popen[bytes]] = []

    def start(*config: str) -> tuple[str, Restart]:
        port = free_port()
        args = [SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), *config]

        def launch() -> None:
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proc)
            for _ in range(500):  # another process getting ready to listen: nothing to wait on but the port
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    return
                except OSError:
                    assert proc.poll() is None, "redis-server exited at start"
                    subprocess.run(["sleep", "0.01"], check=True)
            raise TimeoutError("redis-server did not listen")

        def restart() -> None:
            proc = procs[-1]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            launch()

        launch()
        return f"redis://127.0.0.1:{port}/0?prefix=drill", restart

    yield start  # type: ignore[misc]
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


async def write_state(store: Store) -> tuple[int, int]:
    await store.put("job", "j1", {"step": 2}, status="running", group="bp")
    await store.enqueue("q", "waiting", {"n": 1})
    await store.enqueue("q", "held", {"n": 2}, priority=5)
    [lease] = await store.take("q", owner="w1", lease_s=30)
    token = await store.acquire_lock("owner", "a", ttl_s=60)
    assert token is not None
    await store.append("j1", "created", status="pending")
    return lease.token, token


async def until_answers(store: Store) -> None:
    """The first calls after the restart may meet the dead connections; the driver reconnects."""
    for _ in range(50):
        try:
            await store.get("job", "none")
            return
        except Exception:
            await asyncio.sleep(0.05)  # the server is restarting: nothing to wait on


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.mark.parametrize("fsync", ["always", "everysec"])
async def test_with_aof_everything_acknowledged_survives_a_kill_of_redis(
    redis_server: Callable[..., tuple[str, Restart]], clock: ManualClock, fsync: str
) -> None:
    # (everysec: Redis writes the AOF before it answers, so a killed server loses nothing; only a crash of
    # the machine loses up to the last second, which this drill cannot show)
    url, restart = redis_server("--appendonly", "yes", "--appendfsync", fsync, "--save", "")
    async with open_store(url, clock=clock) as a, open_store(url, clock=clock) as b:
        lease_token, lock_token = await write_state(a)
        restart()
        await until_answers(a)
        await until_answers(b)
        rec = await b.get("job", "j1")
        assert rec is not None and (rec.data, rec.status, rec.group, rec.version) == (
            {"step": 2},
            "running",
            "bp",
            1,
        )
        assert [e.event for e in await b.history("j1")] == ["created"]
        assert await b.acquire_lock("owner", "b", ttl_s=60) is None  # a's lock is still held
        assert await b.queue_depth("q") == {"ready": 1, "delayed": 0, "leased": 1}
        [again] = await b.take("q", owner="w2", lease_s=30)
        assert again.id == "waiting" and again.token > max(lease_token, lock_token)  # tokens kept growing
        # and takers are woken across instances again once the listeners have resubscribed
        waiter = asyncio.create_task(b.take("q2", owner="w2", lease_s=5, wait_s=60))
        for _ in range(100):
            await a.enqueue("q2", "ping", {})
            done, _ = await asyncio.wait({waiter}, timeout=0.1)
            if done:
                break
            await a.dequeue("q2", "ping")
        assert [lease.id for lease in waiter.result()] == ["ping"]


async def test_with_snapshots_only_a_kill_goes_back_to_the_last_snapshot(
    redis_server: Callable[..., tuple[str, Restart]], clock: ManualClock
) -> None:
    url, restart = redis_server("--appendonly", "no", "--save", "")
    async with open_store(url, clock=clock) as a:
        await a.put("job", "saved", {})
        admin = aioredis.Redis.from_url(url.split("?")[0])
        try:
            await admin.save()  # what `save <seconds> <changes>` does from time to time
        finally:
            await admin.aclose()
        await a.put("job", "after", {})
        restart()
        await until_answers(a)
        assert [r.id for r in await a.list("job")] == ["saved"]


async def test_without_persistence_a_kill_loses_everything_and_the_store_starts_empty(
    redis_server: Callable[..., tuple[str, Restart]], clock: ManualClock
) -> None:
    url, restart = redis_server("--appendonly", "no", "--save", "")
    async with open_store(url, clock=clock) as a:
        await write_state(a)
        restart()
        await until_answers(a)
        assert await a.get("job", "j1") is None and await a.history() == []
        assert await a.queue_depth("q") == {"ready": 0, "delayed": 0, "leased": 0}
    async with open_store(url, clock=clock) as again:  # opens on the empty server (layout written anew)
        await again.put("job", "j2", {})
        assert await again.count("job") == 1
