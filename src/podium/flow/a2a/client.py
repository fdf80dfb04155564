"""An HTTP :class:`~podium.flow.remote.RemoteTransport` for A2A agents served by :mod:`podium.flow.a2a`
(or by PenguiFlow's adapter): a ``RemoteNode`` in one flow calls an agent in another process.

- ``send``: ``POST {agent_url}/message/send``; a ``failed`` or ``cancelled`` task raises
  :class:`A2AClientError` (so the node's retry policy and FlowError apply);
- ``stream``: ``POST {agent_url}/message/stream``; the ``status`` event gives the task and context ids
  (so a cancelled trace cancels the remote task), each ``chunk`` becomes a text event mirrored into the
  local flow, the ``artifact`` carries the result;
- ``cancel``: ``POST {agent_url}/tasks/cancel``.

Each call gets its own task id; the context id is the local trace id, so both sides' histories line up.
A unary call whose caller is cancelled (the trace was cancelled, or the flow stopped) cancels its remote
task before it gives up. httpx is imported when the first transport is made.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..remote import RemoteCallRequest, RemoteCallResult, RemoteStreamEvent

if TYPE_CHECKING:
    import httpx

__all__ = ["A2AClientError", "A2AHttpTransport"]


class A2AClientError(RuntimeError):
    """The remote agent refused the call (HTTP status), or its task failed or was cancelled there."""

    def __init__(self, message: str, *, status: str, detail: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _sse_events(lines: list[str]) -> tuple[str | None, bool, list[str]]:
    """One SSE frame as (event name, has an ``id:``, data lines)."""
    name = None
    has_id = False
    data: list[str] = []
    for line in lines:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "id":
            has_id = True
        elif field == "data":
            data.append(value)
    return name, has_id, data


class A2AHttpTransport:
    """Calls A2A agents over HTTP (see the module docstring).

    Args:
        client: an ``httpx.AsyncClient`` to use (closed by its owner); by default the transport makes one
            and :meth:`aclose` closes it.
        timeout_s: the HTTP timeout when the request gives none (``None``: wait as long as it takes).
        headers: extra HTTP headers on every call (an ``Authorization`` token, say).
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float | None = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        import httpx

        self._httpx = httpx
        self._owned = client is None
        self._client = client or httpx.AsyncClient(headers=dict(headers or {}))
        self._headers = dict(headers or {})
        self._timeout_s = timeout_s

    async def aclose(self) -> None:
        if self._owned:
            await self._client.aclose()

    def _body(self, request: RemoteCallRequest, task_id: str) -> dict[str, Any]:
        message = request.message
        return {
            "payload": _jsonable(message.payload),
            "headers": message.headers.model_dump(mode="json"),
            "meta": dict(message.meta),
            "taskId": task_id,
            "contextId": message.trace_id,
            **({"deadlineSeconds": message.deadline_s} if message.deadline_s is not None else {}),
        }

    def _timeout(self, request: RemoteCallRequest) -> float | None:
        return request.timeout_s if request.timeout_s is not None else self._timeout_s

    @staticmethod
    def _url(agent_url: str, path: str) -> str:
        return agent_url.rstrip("/") + path

    def _raise_for_status(self, response: httpx.Response, agent_url: str) -> None:
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise A2AClientError(
                f"{agent_url} answered {response.status_code}: {detail}", status="rejected", detail=detail
            )

    async def send(self, request: RemoteCallRequest) -> RemoteCallResult:
        task_id = uuid.uuid4().hex
        try:
            response = await self._client.post(
                self._url(request.agent_url, "/message/send"),
                json=self._body(request, task_id),
                headers=self._headers,
                timeout=self._timeout(request),
            )
        except asyncio.CancelledError:
            with suppress(Exception):
                await asyncio.shield(self.cancel(agent_url=request.agent_url, task_id=task_id))
            raise
        self._raise_for_status(response, request.agent_url)
        reply = response.json()
        status = reply.get("status")
        if status != "succeeded":
            error = reply.get("error") or {}
            message = error.get("message") if isinstance(error, Mapping) else None
            raise A2AClientError(
                f"remote task {task_id} at {request.agent_url} {status}: {message or status}",
                status=str(status),
                detail=error or None,
            )
        return RemoteCallResult(
            result=reply.get("output"),
            context_id=reply.get("contextId"),
            task_id=reply.get("taskId", task_id),
            agent_url=request.agent_url,
            meta=reply.get("meta"),
        )

    async def stream(self, request: RemoteCallRequest) -> AsyncIterator[RemoteStreamEvent]:
        task_id = uuid.uuid4().hex
        url = self._url(request.agent_url, "/message/stream")
        body = self._body(request, task_id)
        async with self._client.stream(
            "POST", url, json=body, headers=self._headers, timeout=self._timeout(request)
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                self._raise_for_status(response, request.agent_url)
            frame: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    frame.append(line)
                    continue
                if not frame:
                    continue
                event = self._event(request, *_sse_events(frame))
                frame = []
                if event is None:
                    return
                yield event

    def _event(
        self, request: RemoteCallRequest, name: str | None, is_chunk: bool, data: list[str]
    ) -> RemoteStreamEvent | None:
        """Map one SSE frame of the adapter to a stream event (``None`` at the final ``done``)."""
        agent_url = request.agent_url
        if is_chunk:  # a stream chunk: text lines, then the chunk's meta as JSON
            meta = json.loads(data[-1]) if len(data) > 1 else {}
            text = "\n".join(data[:-1] if len(data) > 1 else data)
            return RemoteStreamEvent(text=text, done=name == "done", meta=meta, agent_url=agent_url)
        payload = json.loads("\n".join(data)) if data else {}
        context_id, task_id = payload.get("contextId"), payload.get("taskId")
        if name == "status":
            return RemoteStreamEvent(context_id=context_id, task_id=task_id, agent_url=agent_url)
        if name == "artifact":
            output = payload.get("output")
            return RemoteStreamEvent(
                result=output, context_id=context_id, task_id=task_id, agent_url=agent_url
            )
        if name == "error":
            code = payload.get("code", "ERROR")
            raise A2AClientError(
                f"remote task at {agent_url} ended with {code}: {payload.get('message')}",
                status="cancelled" if code == "TRACE_CANCELLED" else "failed",
                detail=payload,
            )
        return None

    async def cancel(self, *, agent_url: str, task_id: str) -> None:
        response = await self._client.post(
            self._url(agent_url, "/tasks/cancel"),
            json={"taskId": task_id},
            headers=self._headers,
            timeout=10.0,
        )
        self._raise_for_status(response, agent_url)
