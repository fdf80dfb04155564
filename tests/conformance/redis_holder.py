"""Child process for test_redis: takes one item from a Redis store, says so, and hangs until SIGKILLed.

Usage: python redis_holder.py STORE_URL QUEUE CLOCK_START — prints the lease's token, then waits forever.
"""

from __future__ import annotations

import asyncio
import sys

from podium.clock import ManualClock
from podium.store import open_store


async def main(url: str, queue: str, start: float) -> None:
    async with open_store(url, clock=ManualClock(start)) as store:
        [lease] = await store.take(queue, owner="holder", lease_s=30)
        print(lease.token, flush=True)
        await asyncio.Event().wait()  # hold the lease until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
