"""An async client for instrument nodes that speak MADSci's node REST protocol (podium's or MADSci's).

:meth:`NodeClient.run_action` runs one action end to end: create -> upload files -> start -> wait for a
terminal status -> result -> download output files. Waiting is frugal: a podium node holds a status
request until the action ends (``?wait_s=``, the long-poll extension). Any other node (MADSci's) is asked
for the action's result, which carries its status, so the request that sees the end is the one that brings
the result; when to ask is learned per action name (:class:`PollPlan`): with no history, a short growing
backoff (20 ms, x2, capped at ``poll_max_s``); once an action of that name has been seen to end, nothing is
sent until the shortest recent duration has passed, then a few tight polls (``poll_tight_s``) catch the end
within milliseconds, before the backoff resumes. A 429 answer is waited out for its ``Retry-After``.
MADSci's nodes rate-limit clients (100 requests a minute and 50 a second by default, loopback exempt), so
nothing here polls more than it must: a MADSci action that ends while the node holds the start request
(its SDK waits 0.5 s there) costs two requests, create and start.

Each action carries podium's own id (a ULID chosen before anything is sent) and the node's id for it: a
podium node adopts podium's id, a MADSci node makes its own, handed to ``on_created`` before the action is
started, so the caller can journal it. After a crash, :meth:`NodeClient.reconcile` asks the node what
became of an action by that id. An action the caller never saw acknowledged by ``on_created`` was never
started.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import inspect
import io
import logging
import zipfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from podium.clock import Clock, system_clock
from podium.errors import InvalidInputError
from podium.ids import new_ulid_str
from podium.nodes.errors import (
    ActionTimeoutError,
    NodeError,
    NodeProtocolError,
    NodeRateLimitedError,
    NodeRequestError,
    NodeUnreachableError,
)
from podium.tokens import split_url_token
from podium.wire.madsci_node import (
    LONG_POLL_HEADER,
    NODE_STATUS_HEADER,
    ActionResult,
    ActionStatus,
    AdminCommandResponse,
    AdminCommands,
    Error,
    NodeInfo,
    NodeStatus,
)

__all__ = [
    "ActionOutcome",
    "FileArg",
    "NodeClient",
    "PollPlan",
    "estimate_end_s",
    "expected_end_s",
    "request_headers",
    "send_admin_command_all",
]

_EXTRA_HEADERS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "podium_node_request_headers", default=None
)


@contextlib.contextmanager
def request_headers(headers: Mapping[str, str]) -> Iterator[None]:
    """Send ``headers`` with every request a :class:`NodeClient` makes inside this block (in this task and
    the tasks it starts): the workcell passes each step's W3C ``traceparent`` to the node this way."""
    token = _EXTRA_HEADERS.set(headers)
    try:
        yield
    finally:
        _EXTRA_HEADERS.reset(token)


logger = logging.getLogger("podium.nodes.client")

FileArg = Path | str | Sequence[Path | str]
"""A file argument: one path, or several for a ``list[Path]`` parameter."""

_M = TypeVar("_M", NodeStatus, NodeInfo, ActionResult, AdminCommandResponse)
_UNKNOWN_LIMIT = 3  # consecutive ``unknown`` answers after a start before the action counts as lost


@dataclass
class ActionOutcome:
    """What became of one action.

    Attributes:
        action_id: podium's id for the action (the caller's, or one made before sending).
        node_action_id: The node's id for it (the same on podium nodes).
        action_name: The action.
        status: The last status seen; terminal unless the action was lost (``unknown``).
        errors: The node's errors for it.
        json_result: The JSON the action returned.
        file_keys: Result file keys the node announced.
        files: Downloaded result files by key (empty when no ``download_dir`` was given).
        datapoints: Datapoint ids the node reported, if any.
        result: The node's raw result.
        node_status: The node's status read right after the action, when asked for and available.
    """

    action_id: str
    node_action_id: str
    action_name: str
    status: ActionStatus
    errors: list[Error]
    json_result: Any
    file_keys: list[str]
    files: dict[str, Path]
    datapoints: dict[str, str | list[str]] | None
    result: ActionResult
    node_status: NodeStatus | None = None

    @property
    def ok(self) -> bool:
        """Whether the action succeeded."""
        return self.status is ActionStatus.SUCCEEDED

    @property
    def error_message(self) -> str:
        """The node's error messages joined, or an empty string."""
        return "; ".join(e.message or e.error_type or "error" for e in self.errors)


@dataclass
class PollPlan:
    """When to ask a node that does not long-poll whether an action has ended (a pure schedule).

    ``expected_s`` is when actions of this name lately ended (seconds from the start request), or None.
    Before it, the next poll waits for it; from it, polls ``tight_s`` apart, the gap growing by half each
    time (so a run that ends later than expected is still caught within a third of its lateness); with no
    expectation, a backoff from ``initial_s``, times ``factor``. Every gap is capped at ``max_s``.
    """

    started_at: float
    expected_s: float | None
    initial_s: float
    factor: float
    max_s: float
    tight_s: float
    _gap_s: float = 0.0

    def __post_init__(self) -> None:
        self._gap_s = self.initial_s if self.expected_s is None else self.tight_s

    def next_delay_s(self, now: float) -> float:
        """Seconds to wait before the next poll, at ``now`` (after a poll that saw the action running)."""
        if self.expected_s is not None:
            until = self.started_at + self.expected_s - now
            if until > 0:
                return min(until, self.max_s) if until > self.max_s * 4 else until
            delay = self._gap_s
            self._gap_s = min(self._gap_s * 1.5, self.max_s)
            return delay
        delay = self._gap_s
        self._gap_s = min(self._gap_s * self.factor, self.max_s)
        return delay


def estimate_end_s(
    last_running_s: float | None, seen_ended_s: float, *, tight_s: float
) -> tuple[float, bool]:
    """When an action ended (seconds from its start request), from the last poll that saw it running and
    the first that saw it ended, and whether that is precise: the midpoint when the two were at most a few
    tight gaps apart, else the earliest it can have ended (a bound the next run's polls start from)."""
    if last_running_s is None:
        return seen_ended_s, False
    gap = seen_ended_s - last_running_s
    if gap <= 3 * tight_s:
        return last_running_s + gap / 2, True
    return last_running_s, False


def expected_end_s(recent: Sequence[tuple[float, bool]]) -> float | None:
    """The end to poll for next: the earliest precise recent end, else the latest bound seen."""
    precise = [s for s, ok in recent if ok]
    if precise:
        return min(precise)
    return max((s for s, _ in recent), default=None)


class NodeClient:
    """Talk to one node. Use as an async context manager, or call :meth:`aclose`.

    Args:
        url: The node's base URL. Userinfo in it (``http://podium:<token>@host:2000``) is taken as the
            node's token and removed from the URL the client shows.
        token: The node's API token, sent as ``Authorization: Bearer`` (beats one in the URL).
        clock: The clock for every wait (backoff, Retry-After, action timeouts).
        timeout_s: HTTP timeout of one request.
        transport: An httpx transport (``node.asgi_transport()`` for socket-free tests).
        poll_initial_s: First backoff when the node does not long-poll.
        poll_factor: Backoff growth per poll.
        poll_max_s: Longest backoff between two status polls.
        poll_tight_s: First gap between the polls from an action's expected end (see :class:`PollPlan`).
        history: How many recent durations per action name the expected end is taken from.
        long_poll_s: How long a podium node may hold one status request.
        max_rate_limit_wait_s: Give up (``NodeRateLimitedError``) after waiting this long on 429s.
        retries: Extra attempts for a request that could not be sent (connection refused) or, for
            reads, that got no answer.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        clock: Clock = system_clock,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        poll_initial_s: float = 0.02,
        poll_factor: float = 2.0,
        poll_max_s: float = 1.0,
        poll_tight_s: float = 0.003,
        history: int = 5,
        long_poll_s: float = 5.0,
        max_rate_limit_wait_s: float = 120.0,
        retries: int = 2,
    ) -> None:
        bare, url_token = split_url_token(url)
        self.url = bare.rstrip("/")
        token = token or url_token
        self.clock = clock
        self.timeout_s = timeout_s
        self.poll_initial_s, self.poll_factor, self.poll_max_s = poll_initial_s, poll_factor, poll_max_s
        self.poll_tight_s = poll_tight_s
        self._history = max(1, history)
        self._durations: dict[str, collections.deque[tuple[float, bool]]] = {}
        self._long_polls: bool | None = None
        """Whether the node holds status requests (learned from its first answer)."""
        self.long_poll_s = long_poll_s
        self.max_rate_limit_wait_s = max_rate_limit_wait_s
        self.retries = retries
        self.requests_sent = 0
        """Requests sent so far (a figure for tests and benchmarks)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self._http = httpx.AsyncClient(
            base_url=self.url, timeout=timeout_s, transport=transport, headers=headers
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections. Idempotent."""
        await self._http.aclose()

    # ----------------------------------------------------------------------------------------------
    # Node-level calls
    # ----------------------------------------------------------------------------------------------

    async def get_status(self) -> NodeStatus:
        """``GET /status``."""
        return self._parse(NodeStatus, await self._request("GET", "/status"))

    async def get_info(self) -> NodeInfo:
        """``GET /info``."""
        return self._parse(NodeInfo, await self._request("GET", "/info"))

    async def get_state(self) -> dict[str, Any]:
        """``GET /state``."""
        body = self._json(await self._request("GET", "/state"))
        if not isinstance(body, dict):
            raise NodeProtocolError("/state is not a JSON object", url=self.url)
        return body

    async def get_log(self) -> dict[str, Any]:
        """``GET /log``: the node's events by id."""
        body = self._json(await self._request("GET", "/log"))
        if not isinstance(body, dict):
            raise NodeProtocolError("/log is not a JSON object", url=self.url)
        return body

    async def set_config(self, new_config: Mapping[str, Any]) -> bool:
        """``POST /config``; whether the node accepted it."""
        body = self._json(await self._request("POST", "/config", json=to_jsonable_python(dict(new_config))))
        return bool(isinstance(body, dict) and body.get("success"))

    async def send_admin_command(self, command: AdminCommands | str) -> AdminCommandResponse:
        """``POST /admin/{command}``. A command the node does not implement answers ``success=False``."""
        try:
            cmd = AdminCommands(command)
        except ValueError:
            raise InvalidInputError(
                f"unknown admin command {command!r}; one of {[c.value for c in AdminCommands]}",
                field="command",
            ) from None
        return self._parse(AdminCommandResponse, await self._request("POST", f"/admin/{cmd.value}"))

    async def get_action_history(self, action_id: str | None = None) -> dict[str, list[ActionResult]]:
        """``GET /action``: every status change of one action, or of all actions the node remembers."""
        params = {"action_id": action_id} if action_id else None
        body = self._json(await self._request("GET", "/action", params=params))
        try:
            return {k: [ActionResult.model_validate(r) for r in v] for k, v in body.items()}
        except (AttributeError, TypeError, ValidationError) as exc:
            raise NodeProtocolError(f"/action: {exc}", url=self.url) from None

    # ----------------------------------------------------------------------------------------------
    # Actions, step by step
    # ----------------------------------------------------------------------------------------------

    async def create_action(
        self,
        action_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        action_id: str | None = None,
        var_args: Sequence[Any] | None = None,
        var_kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """``POST /action/{name}``; return the node's id for the action (``action_id`` on podium nodes)."""
        body: dict[str, Any] = {"args": to_jsonable_python(dict(args or {}))}
        if action_id is not None:
            body["action_id"] = action_id
        if var_args is not None:
            body["var_args"] = to_jsonable_python(list(var_args))
        if var_kwargs is not None:
            body["var_kwargs"] = to_jsonable_python(dict(var_kwargs))
        answer = self._json(await self._request("POST", f"/action/{action_name}", json=body))
        node_action_id = answer.get("action_id") if isinstance(answer, dict) else None
        if not isinstance(node_action_id, str):
            raise NodeProtocolError(f"create {action_name}: no action_id in {answer!r}", url=self.url)
        return node_action_id

    async def upload_files(self, action_name: str, node_action_id: str, files: Mapping[str, FileArg]) -> None:
        """Upload each file argument (a list of paths goes in one request)."""
        for arg, value in files.items():
            paths = [Path(value)] if isinstance(value, str | Path) else [Path(v) for v in value]
            field_name = "file" if isinstance(value, str | Path) else "files"
            parts = []
            for path in paths:
                try:
                    content = await asyncio.to_thread(path.expanduser().read_bytes)
                except OSError as exc:
                    raise InvalidInputError(f"cannot read {path}: {exc}", field=f"files.{arg}") from None
                parts.append((field_name, (path.name, content, "application/octet-stream")))
            await self._request("POST", f"/action/{action_name}/{node_action_id}/upload/{arg}", files=parts)

    async def start_action(
        self, action_name: str, node_action_id: str, *, wait_s: float | None = None
    ) -> ActionResult:
        """``POST /action/{name}/{id}/start``: the node's first answer (may already be terminal).

        With ``wait_s``, a podium node answers when the action ends (or then) and sends its status after
        the action along (kept in :attr:`last_status`); a MADSci node ignores it and answers at once.
        """
        result, _ = await self._start(action_name, node_action_id, wait_s)
        return result

    async def _start(
        self, action_name: str, node_action_id: str, wait_s: float | None
    ) -> tuple[ActionResult, NodeStatus | None]:
        response = await self._request(
            "POST",
            f"/action/{action_name}/{node_action_id}/start",
            retry_read=False,
            params={"wait_s": f"{wait_s:.3f}"} if wait_s else None,
            extra_timeout_s=wait_s or 0.0,
        )
        status = None
        header = response.headers.get(NODE_STATUS_HEADER)
        if header:
            try:
                status = NodeStatus.model_validate_json(header)
            except ValueError:
                status = None  # a malformed extra is no reason to fail the action
        return self._parse(ActionResult, response), status

    async def get_action_status(
        self, node_action_id: str, *, action_name: str | None = None, wait_s: float | None = None
    ) -> ActionStatus:
        """The action's status. With ``wait_s``, a podium node answers when the action ends (or then)."""
        return (await self._status(node_action_id, action_name, wait_s))[0]

    async def get_action_result(self, node_action_id: str, *, action_name: str | None = None) -> ActionResult:
        """The action's latest result (status ``unknown`` when the node does not know the id)."""
        path = self._action_path(node_action_id, action_name, "result")
        result = self._parse(ActionResult, await self._request("GET", path))
        return result.model_copy(update={"action_id": node_action_id})

    async def wait_for_action(
        self,
        node_action_id: str,
        *,
        action_name: str | None = None,
        timeout_s: float | None = None,
        started_at: float | None = None,
        running_at: float | None = None,
    ) -> ActionResult:
        """Wait until the action is terminal (or lost: ``unknown`` several times); return its result.

        ``started_at`` (the clock's monotonic time of the start request) lets a node that does not long-poll
        be polled on the action's learned schedule (see the module docstring); ``running_at`` is when the
        node last said the action was running (its answer to the start).

        Raises:
            ActionTimeoutError: Not terminal within ``timeout_s``; the action may still be running.
        """
        deadline = None if timeout_s is None else self.clock.monotonic() + timeout_s
        if self._long_polls is not False:
            result = await self._wait_held(node_action_id, action_name, deadline, timeout_s)
            if result is not None:
                return result
        return await self._wait_polled(
            node_action_id, action_name, deadline, timeout_s, started_at, running_at
        )

    async def _wait_held(
        self, node_action_id: str, action_name: str | None, deadline: float | None, timeout_s: float | None
    ) -> ActionResult | None:
        """Wait on a node that holds status requests; None as soon as it shows it does not."""
        unknown_seen = 0
        while True:
            wait_s = self.long_poll_s
            if deadline is not None:
                wait_s = min(wait_s, max(0.0, deadline - self.clock.monotonic()))
            status, held = await self._status(node_action_id, action_name, wait_s or None)
            if not held and not status.is_terminal:
                self._long_polls = False
                return None
            self._long_polls = self._long_polls or held
            if status.is_terminal:
                break
            unknown_seen = unknown_seen + 1 if status is ActionStatus.UNKNOWN else 0
            if unknown_seen >= _UNKNOWN_LIMIT:
                logger.warning("action %s is unknown to node %s", node_action_id, self.url)
                break
            self._check_deadline(node_action_id, status, deadline, timeout_s)
        return await self.get_action_result(node_action_id, action_name=action_name)

    async def _wait_polled(
        self,
        node_action_id: str,
        action_name: str | None,
        deadline: float | None,
        timeout_s: float | None,
        started_at: float | None,
        running_at: float | None,
    ) -> ActionResult:
        """Poll the action's result (it carries the status) on the learned schedule."""
        key = action_name or ""
        recent = self._durations.get(key)
        origin = self.clock.monotonic() if started_at is None else started_at
        plan = PollPlan(
            started_at=origin,
            expected_s=expected_end_s(recent) if recent and started_at is not None else None,
            initial_s=self.poll_initial_s,
            factor=self.poll_factor,
            max_s=self.poll_max_s,
            tight_s=self.poll_tight_s,
        )
        unknown_seen = 0
        last_running = running_at
        while True:
            delay = plan.next_delay_s(self.clock.monotonic())
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - self.clock.monotonic()))
            if delay > 0:
                await self.clock.sleep(delay)
            asked = self.clock.monotonic()
            result = await self.get_action_result(node_action_id, action_name=action_name)
            if result.status.is_terminal:
                if started_at is not None:
                    ended = estimate_end_s(
                        None if last_running is None else last_running - origin,
                        asked - origin,
                        tight_s=self.poll_tight_s,
                    )
                    self._durations.setdefault(key, collections.deque(maxlen=self._history)).append(ended)
                return result
            last_running = asked
            unknown_seen = unknown_seen + 1 if result.status is ActionStatus.UNKNOWN else 0
            if unknown_seen >= _UNKNOWN_LIMIT:
                logger.warning("action %s is unknown to node %s", node_action_id, self.url)
                return result
            self._check_deadline(node_action_id, result.status, deadline, timeout_s)

    def _check_deadline(
        self, node_action_id: str, status: ActionStatus, deadline: float | None, timeout_s: float | None
    ) -> None:
        if deadline is not None and self.clock.monotonic() >= deadline:
            raise ActionTimeoutError(
                f"action {node_action_id} still {status.value} after {timeout_s} s",
                url=self.url,
                action_id=node_action_id,
                last_status=status.value,
            )

    async def download_files(
        self,
        node_action_id: str,
        dest_dir: Path | str,
        *,
        action_name: str | None = None,
        file_keys: Sequence[str] | None = None,
    ) -> dict[str, Path]:
        """Download the action's result files (a ZIP) into ``dest_dir``; return them by file key."""
        response = await self._request("GET", self._action_path(node_action_id, action_name, "download"))
        dest = Path(dest_dir)
        try:
            archive = zipfile.ZipFile(io.BytesIO(response.content))
        except zipfile.BadZipFile:
            raise NodeProtocolError(f"download of {node_action_id} is not a ZIP", url=self.url) from None
        extracted: list[Path] = []
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = Path(info.filename).name
                if not name or name in {".", ".."}:
                    continue
                target = dest / name
                data = archive.read(info)
                await asyncio.to_thread(_write_file, target, data)
                extracted.append(target)
        keys = list(file_keys) if file_keys else []
        if not keys or keys == ["file"] or (len(extracted) == 1 and len(keys) <= 1):
            label = keys[0] if keys else "file"
            if len(extracted) == 1:
                return {label: extracted[0]}
            return {p.stem: p for p in extracted}
        out: dict[str, Path] = {}
        for key in keys:
            match = next((p for p in extracted if p.stem == key), None) or next(
                (p for p in extracted if p.name.startswith(key)), None
            )
            if match is not None:
                out[key] = match
        return out

    # ----------------------------------------------------------------------------------------------
    # Actions, end to end
    # ----------------------------------------------------------------------------------------------

    async def run_action(
        self,
        action_name: str,
        args: Mapping[str, Any] | None = None,
        *,
        files: Mapping[str, FileArg] | None = None,
        action_id: str | None = None,
        download_dir: Path | str | None = None,
        timeout_s: float | None = None,
        on_created: Callable[[str], Awaitable[None] | None] | None = None,
        refresh_status: bool = True,
        var_args: Sequence[Any] | None = None,
        var_kwargs: Mapping[str, Any] | None = None,
        created_as: str | None = None,
    ) -> ActionOutcome:
        """Run one action to its end and return its outcome (a failed action is an outcome, not an error).

        Args:
            action_name: The action.
            args: JSON arguments; pydantic models (``LocationArgument``) are serialised.
            files: File arguments by name.
            action_id: podium's id for this action, recorded by the caller beforehand; new if omitted.
            download_dir: Where to put the result files; not downloaded when omitted.
            timeout_s: How long to wait for the action to end (clock time).
            on_created: Called (and awaited) with the node's action id before the action is started.
            refresh_status: Read the node's ``/status`` right after the action.
            var_args: Extra positional arguments, for MADSci actions that take ``*args``.
            var_kwargs: Extra keyword arguments, for MADSci actions that take ``**kwargs``.
            created_as: The node's id of an action it already holds created and not started (acknowledged
                before a crash): it is not created again, only given its files and started (a duplicate
                start, say a dead caller's request arriving late, is refused by the node).

        Raises:
            NodeUnreachableError: The node did not answer.
            NodeRequestError: The node refused a request (422: bad arguments, 404: unknown action).
            ActionTimeoutError: The action did not end within ``timeout_s``.
        """
        action_id = action_id or new_ulid_str()
        node_action_id = created_as or await self.create_action(
            action_name, args, action_id=action_id, var_args=var_args, var_kwargs=var_kwargs
        )
        if on_created is not None:
            maybe = on_created(node_action_id)
            if inspect.isawaitable(maybe):
                await maybe
        if files:
            await self.upload_files(action_name, node_action_id, files)
        wait_s = self.long_poll_s if timeout_s is None else min(self.long_poll_s, timeout_s)
        started_at = self.clock.monotonic()
        result, status_after = await self._start(action_name, node_action_id, wait_s)
        if not result.status.is_terminal:
            result = await self.wait_for_action(
                node_action_id,
                action_name=action_name,
                timeout_s=timeout_s,
                started_at=started_at,
                running_at=self.clock.monotonic(),
            )
            status_after = None
        return await self._outcome(
            action_id, node_action_id, action_name, result, download_dir, refresh_status, status_after
        )

    async def reconcile(
        self,
        node_action_id: str,
        *,
        action_name: str | None = None,
        action_id: str | None = None,
        wait: bool = False,
        timeout_s: float | None = None,
        download_dir: Path | str | None = None,
    ) -> ActionOutcome:
        """After a crash: what became of an action the node was sent? Never re-sends it.

        Status ``unknown`` means the node has no record of it (never started, or the node restarted);
        ``not_started`` that it was created but not started; a terminal status is its real outcome.
        With ``wait``, a running action is waited for.
        """
        result = await self.get_action_result(node_action_id, action_name=action_name)
        if wait and not result.status.is_terminal and result.status is not ActionStatus.UNKNOWN:
            result = await self.wait_for_action(node_action_id, action_name=action_name, timeout_s=timeout_s)
        return await self._outcome(
            action_id or node_action_id, node_action_id, action_name or "", result, download_dir, False
        )

    # ----------------------------------------------------------------------------------------------
    # Internals
    # ----------------------------------------------------------------------------------------------

    async def _outcome(
        self,
        action_id: str,
        node_action_id: str,
        action_name: str,
        result: ActionResult,
        download_dir: Path | str | None,
        refresh_status: bool,
        status_after: NodeStatus | None = None,
    ) -> ActionOutcome:
        keys = list(result.files or [])
        downloaded: dict[str, Path] = {}
        if keys and download_dir is not None and result.status is ActionStatus.SUCCEEDED:
            downloaded = await self.download_files(
                node_action_id, download_dir, action_name=action_name or None, file_keys=keys
            )
        node_status = status_after
        if refresh_status and node_status is None:
            try:
                node_status = await self.get_status()
            except NodeError as exc:
                logger.warning("status of %s after action %s: %s", self.url, node_action_id, exc)
        return ActionOutcome(
            action_id=action_id,
            node_action_id=node_action_id,
            action_name=action_name,
            status=result.status,
            errors=list(result.errors),
            json_result=result.json_result,
            file_keys=keys,
            files=downloaded,
            datapoints=result.datapoints,
            result=result,
            node_status=node_status,
        )

    @staticmethod
    def _action_path(node_action_id: str, action_name: str | None, leaf: str) -> str:
        if action_name:
            return f"/action/{action_name}/{node_action_id}/{leaf}"
        return f"/action/{node_action_id}/{leaf}"

    async def _status(
        self, node_action_id: str, action_name: str | None, wait_s: float | None
    ) -> tuple[ActionStatus, bool]:
        params = {"wait_s": f"{wait_s:.3f}"} if wait_s else None
        response = await self._request(
            "GET",
            self._action_path(node_action_id, action_name, "status"),
            params=params,
            extra_timeout_s=wait_s or 0.0,
        )
        value = self._json(response)
        try:
            status = ActionStatus(value)
        except ValueError:
            raise NodeProtocolError(f"not an action status: {value!r}", url=self.url) from None
        return status, response.headers.get(LONG_POLL_HEADER) == "1"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        retry_read: bool | None = None,
        extra_timeout_s: float = 0.0,
        **kwargs: Any,
    ) -> httpx.Response:
        # A request that never reached the node (connect error) is always safe to send again; one that
        # may have reached it is only retried when it is a read (GET), unless told otherwise.
        retry_read = method == "GET" if retry_read is None else retry_read
        extra = _EXTRA_HEADERS.get()
        if extra:
            kwargs["headers"] = {**extra, **kwargs["headers"]} if kwargs.get("headers") else extra
        attempt, rate_waited = 0, 0.0
        timeout = self.timeout_s + extra_timeout_s
        while True:
            try:
                self.requests_sent += 1
                response = await self._http.request(method, path, timeout=timeout, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self.retries:
                    attempt += 1
                    await self.clock.sleep(0.05 * 2**attempt)
                    continue
                raise NodeUnreachableError(f"{method} {path}: {exc!r}", url=self.url) from None
            except httpx.TransportError as exc:
                if retry_read and attempt < self.retries:
                    attempt += 1
                    await self.clock.sleep(0.05 * 2**attempt)
                    continue
                raise NodeUnreachableError(f"{method} {path}: {exc!r}", url=self.url) from None
            if response.status_code == 429:
                delay = _retry_after_s(response)
                if rate_waited + delay > self.max_rate_limit_wait_s:
                    raise NodeRateLimitedError(
                        f"{method} {path}: still rate limited after {rate_waited:.1f} s",
                        url=self.url,
                        status_code=429,
                        detail=_detail(response),
                    )
                logger.info("node %s rate limited %s %s; waiting %.2f s", self.url, method, path, delay)
                rate_waited += delay
                await self.clock.sleep(delay)
                continue
            if response.status_code >= 400:
                raise NodeRequestError(
                    f"{method} {path}",
                    url=self.url,
                    status_code=response.status_code,
                    detail=_detail(response),
                )
            return response

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise NodeProtocolError(
                f"{response.request.method} {response.request.url.path}: not JSON: {response.text[:200]!r}",
                url=self.url,
            ) from None

    def _parse(self, model: type[_M], response: httpx.Response) -> _M:
        try:
            return model.model_validate(self._json(response))
        except ValidationError as exc:
            raise NodeProtocolError(
                f"{response.request.url.path}: not a {model.__name__}: {exc.errors(include_url=False)[:3]}",
                url=self.url,
            ) from None


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _retry_after_s(response: httpx.Response) -> float:
    try:
        return max(0.05, float(response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    return body.get("detail", body) if isinstance(body, dict) else body


async def send_admin_command_all(
    clients: Mapping[str, NodeClient], command: AdminCommands | str
) -> dict[str, AdminCommandResponse | NodeError]:
    """Send one admin command to several nodes at once; a node that fails gets its error, not an exception."""

    async def one(client: NodeClient) -> AdminCommandResponse | NodeError:
        try:
            return await client.send_admin_command(command)
        except NodeError as exc:
            return exc

    names = list(clients)
    answers = await asyncio.gather(*(one(clients[n]) for n in names))
    return dict(zip(names, answers, strict=True))
