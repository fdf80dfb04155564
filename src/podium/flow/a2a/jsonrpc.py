"""The A2A protocol's own binding (JSON-RPC 2.0, A2A 1.0 shapes), so official A2A clients (``a2a-sdk``) can
discover and call a flow served by :class:`A2AServerAdapter`, beside PenguiFlow's REST-style routes.

- ``GET /.well-known/agent-card.json``: the agent card (:func:`agent_card_v1`);
- ``POST /`` with ``SendMessage``: the message's parts become the flow's payload (one text part -> the
  text, one data part -> the data, several -> the list), the trace's result comes back as an agent message
  (a string as a text part, anything else as a data part); ``CancelTask`` cancels a running task.

The request headers the flow needs (``tenant``) come from the message metadata's ``headers`` or from the
adapter's ``default_headers``. Errors are JSON-RPC errors, never HTTP 500s: -32700 unreadable JSON, -32600
not a JSON-RPC request, -32601 unknown method, -32602 bad params (the field named), -32603 the flow failed,
-32001 task not found (A2A's code).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .server import A2AMessagePayload, A2ARequestError, A2ATaskCancelRequest

if TYPE_CHECKING:
    from .server import A2AServerAdapter

__all__ = ["agent_card_v1", "handle_jsonrpc"]

PROTOCOL_VERSION = "1.0"


def agent_card_v1(adapter: A2AServerAdapter, url: str) -> dict[str, Any]:
    """The adapter's card in the A2A 1.0 shape, served at ``url`` over JSON-RPC."""
    card = adapter.agent_card
    return {
        "name": card.name,
        "description": card.description,
        "version": card.version,
        "supportedInterfaces": [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": PROTOCOL_VERSION}
        ],
        "capabilities": {"streaming": False},
        "defaultInputModes": ["text/plain", "application/json"],
        "defaultOutputModes": ["text/plain", "application/json"],
        "skills": [
            {"id": skill.name, "name": skill.name, "description": skill.description, "tags": []}
            for skill in card.skills
        ],
        **({"documentationUrl": card.documentation_url} if card.documentation_url else {}),
    }


class _RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _payload_of(message: Mapping[str, Any]) -> Any:
    parts = message.get("parts")
    if not isinstance(parts, list) or not parts:
        raise _RpcError(-32602, "params.message.parts: at least one part is required")
    values = []
    for index, part in enumerate(parts):
        if not isinstance(part, Mapping):
            raise _RpcError(-32602, f"params.message.parts[{index}]: expected an object")
        if "text" in part:
            values.append(part["text"])
        elif "data" in part:
            values.append(part["data"])
        else:
            raise _RpcError(-32602, f"params.message.parts[{index}]: only text and data parts are accepted")
    return values[0] if len(values) == 1 else values


def _agent_message(output: Any, context_id: str, task_id: str) -> dict[str, Any]:
    part = {"text": output} if isinstance(output, str) else {"data": output}
    return {
        "messageId": uuid.uuid4().hex,
        "contextId": context_id,
        "taskId": task_id,
        "role": "ROLE_AGENT",
        "parts": [part],
    }


async def _send(adapter: A2AServerAdapter, params: Mapping[str, Any]) -> dict[str, Any]:
    message = params.get("message")
    if not isinstance(message, Mapping):
        raise _RpcError(-32602, "params.message: required (an object)")
    raw_metadata = message.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    request = A2AMessagePayload(
        payload=_payload_of(message),
        headers=dict(metadata.get("headers") or {}),
        meta={key: value for key, value in metadata.items() if key != "headers"},
        context_id=message.get("contextId") or None,
    )
    try:
        reply = await adapter.handle_send(request)
    except A2ARequestError as exc:
        raise _RpcError(-32602 if exc.status_code == 422 else -32603, exc.detail) from exc
    if reply["status"] != "succeeded":
        error = reply.get("error") or {}
        reason = f": {error['message']}" if isinstance(error, Mapping) and error.get("message") else ""
        raise _RpcError(-32603, f"task {reply['taskId']} {reply['status']}{reason}", reply.get("error"))
    return {"message": _agent_message(reply["output"], reply["contextId"], reply["taskId"])}


async def _cancel(adapter: A2AServerAdapter, params: Mapping[str, Any]) -> dict[str, Any]:
    task_id = params.get("id")
    if not isinstance(task_id, str) or not task_id:
        raise _RpcError(-32602, "params.id: the task id is required")
    reply = await adapter.cancel(A2ATaskCancelRequest(task_id=task_id))
    if not reply["cancelled"]:
        raise _RpcError(-32001, f"task {task_id} not found (or no longer running)")
    return {"id": task_id, "contextId": reply.get("contextId"), "status": {"state": "TASK_STATE_CANCELED"}}


_METHODS = {"SendMessage": _send, "message/send": _send, "CancelTask": _cancel, "tasks/cancel": _cancel}


async def handle_jsonrpc(adapter: A2AServerAdapter, body: Any) -> dict[str, Any]:
    """Answer one JSON-RPC request body (already parsed; ``None`` when it was not JSON)."""
    request_id = body.get("id") if isinstance(body, Mapping) else None
    try:
        if body is None:
            raise _RpcError(-32700, "the body is not JSON")
        if (
            not isinstance(body, Mapping)
            or body.get("jsonrpc") != "2.0"
            or not isinstance(body.get("method"), str)
        ):
            raise _RpcError(-32600, "not a JSON-RPC 2.0 request (jsonrpc '2.0' and a method are required)")
        method = _METHODS.get(body["method"])
        if method is None:
            raise _RpcError(-32601, f"method {body['method']!r} is not supported (SendMessage, CancelTask)")
        params = body.get("params", {})
        if not isinstance(params, Mapping):
            raise _RpcError(-32602, "params: expected an object")
        return {"jsonrpc": "2.0", "id": request_id, "result": await method(adapter, params)}
    except _RpcError as exc:
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            error["data"] = exc.data
        return {"jsonrpc": "2.0", "id": request_id, "error": error}
