"""Serving nodes: uvicorn on a loopback port, in a background thread or as an asyncio task."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from podium.nodes._node import RestNode

__all__ = ["NodeCluster", "NodeServer", "serve_node", "serve_nodes"]


def _listening_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY: without it a reply written in two pieces waits on the
    # client's delayed ACK (about 40 ms a request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    # Listening now means connections made before uvicorn accepts wait in the backlog instead of being
    # refused: the URL is usable as soon as it is returned.
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _uvicorn_server(node: RestNode) -> Any:
    import uvicorn

    config = uvicorn.Config(node.create_app(), log_config=None, log_level="warning", lifespan="on")
    return uvicorn.Server(config)


class NodeServer:
    """Serve one node with uvicorn in a background thread (its own event loop) on ``host:port``.

    ``port=0`` picks a free port. The node's clock must be usable from that thread (the system clock
    is; a ``ManualClock`` is not: use :func:`serve_node` or the ASGI transport for virtual time).
    """

    def __init__(self, node: RestNode, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.node = node
        self._sock = _listening_socket(host, port)
        self.host, self.port = host, self._sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        if node.info.node_url is None:
            node.info.node_url = self.url
        self._server = _uvicorn_server(node)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        node.shutdown_callback = self._request_exit

    def _request_exit(self) -> None:
        self._server.should_exit = True

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by stop()
            self._error = exc

    def start(self) -> str:
        """Start serving; return the URL (usable at once). Idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"node-{self.node.name}", daemon=True)
            self._thread.start()
        return self.url

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop serving and wait for the thread (running actions are cancelled). Idempotent."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"node server {self.node.name} did not stop within {timeout_s} s")
        with contextlib.suppress(OSError):
            self._sock.close()

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NodeCluster:
    """Several nodes, each served by a :class:`NodeServer`; ``urls`` maps node name to URL."""

    def __init__(self, nodes: Mapping[str, RestNode], *, host: str = "127.0.0.1") -> None:
        self.nodes = dict(nodes)
        self.servers = {name: NodeServer(node, host=host) for name, node in self.nodes.items()}
        self.urls = {name: server.url for name, server in self.servers.items()}

    def start(self) -> dict[str, str]:
        """Start every server; return the URLs."""
        for server in self.servers.values():
            server.start()
        return dict(self.urls)

    def stop(self) -> None:
        """Stop every server. Idempotent."""
        for server in self.servers.values():
            server.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def serve_node(node: RestNode, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve a node with uvicorn as a task of the running loop; yields its URL (works with a ManualClock)."""
    sock = _listening_socket(host, port)
    url = f"http://{host}:{sock.getsockname()[1]}"
    if node.info.node_url is None:
        node.info.node_url = url
    server = _uvicorn_server(node)

    def stop() -> None:
        server.should_exit = True

    node.shutdown_callback = stop
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"node-{node.name}")
    try:
        yield url
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serve_nodes(
    nodes: Mapping[str, RestNode], *, host: str = "127.0.0.1"
) -> AsyncIterator[dict[str, str]]:
    """Serve several nodes in the running loop; yields name -> URL."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {
            name: await stack.enter_async_context(serve_node(node, host=host)) for name, node in nodes.items()
        }
        yield urls
