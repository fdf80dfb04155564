"""Errors of the node client, rooted in :mod:`podium.errors`.

::

    PodiumError
    └── NodeError                   talking to an instrument node went wrong (names the node URL)
        ├── NodeUnreachableError    no connection, or no answer in time: treat the node as disconnected
        ├── NodeRequestError        the node answered with an HTTP error (``status_code``, ``detail``)
        │   └── NodeRateLimitedError    still 429 after waiting out ``Retry-After`` for the allowed time
        ├── NodeProtocolError       an answer that is not MADSci's node protocol
        └── ActionTimeoutError      an action did not end within ``timeout_s`` (also a ``TimeoutError``);
                                    the action may still be running on the node: reconcile, never re-send

A failed action is not an exception: :meth:`~podium.nodes.NodeClient.run_action` returns its outcome with
status ``failed`` and the node's errors.
"""

from __future__ import annotations

from typing import Any

from podium.errors import PodiumError

__all__ = [
    "ActionTimeoutError",
    "NodeError",
    "NodeProtocolError",
    "NodeRateLimitedError",
    "NodeRequestError",
    "NodeUnreachableError",
]


class NodeError(PodiumError):
    """Talking to a node failed; ``url`` is the node's base URL."""

    def __init__(self, message: str, *, url: str) -> None:
        self.url = url
        super().__init__(f"{url}: {message}")


class NodeUnreachableError(NodeError):
    """The node did not answer (connection refused, DNS, timeout)."""


class NodeRequestError(NodeError):
    """The node answered an HTTP error status (``detail`` is its JSON ``detail`` or the body text)."""

    def __init__(self, message: str, *, url: str, status_code: int, detail: Any = None) -> None:
        self.status_code, self.detail = status_code, detail
        super().__init__(f"{message} (HTTP {status_code}: {detail})", url=url)


class NodeRateLimitedError(NodeRequestError):
    """The node kept answering 429 Too Many Requests."""


class NodeProtocolError(NodeError):
    """The node's answer does not fit the protocol."""


class ActionTimeoutError(NodeError, TimeoutError):
    """An action did not reach a terminal status in time. It may still be running on the node."""

    def __init__(self, message: str, *, url: str, action_id: str, last_status: str | None) -> None:
        self.action_id, self.last_status = action_id, last_status
        super().__init__(message, url=url)
