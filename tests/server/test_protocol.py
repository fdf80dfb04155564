"""The coalescing transport: writes of one loop step leave together, in order; close flushes first."""

from __future__ import annotations

import asyncio
from typing import Any

from podium.server._protocol import CoalescingTransport, http_protocol


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default


async def test_writes_of_one_step_leave_as_one() -> None:
    raw = _Recorder()
    t = CoalescingTransport(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"")
    t.write(b"body")
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    t.write(b"next")
    t.close()  # flushes before closing
    assert raw.writes[-1] == b"next" and raw.closed
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)
    await asyncio.sleep(0)
    assert len(raw.writes) == 2


def test_protocol_class() -> None:
    assert http_protocol() != "auto"  # httptools is installed in dev
