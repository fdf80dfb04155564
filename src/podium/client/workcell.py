"""``WorkcellClient``: submit and follow workflows on a podium (or MADSci) workcell manager.

The method names and arguments are MADSci's (``submit_workflow``/``start_workflow``, ``query_workflow``,
``retry_workflow``, ``get_nodes``...), so moving over is an import change. Differences: waiting uses
podium's long-poll (``GET /workflow/{id}?wait_s=``) instead of a 2 s poll (it falls back to polling on a
MADSci server), ``prompt_on_error`` defaults to ``False``, and a progress bar is shown while awaiting in a
terminal.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from podium.errors import PodiumError
from podium.tokens import local_token_file, read_token_file, split_url_token
from podium.wire.workcell import (
    DataPoint,
    NodeRecord,
    WorkcellState,
    Workflow,
    WorkflowDefinition,
    load_workflow_definition,
)

__all__ = ["WorkcellClient", "WorkcellClientError", "WorkflowFailedError", "find_workcell_token"]


def find_workcell_token(url: str) -> str | None:
    """The token to use for the workcell at ``url`` when none is given: ``WORKCELL_API_TOKEN``, then the
    token a local ``podium workcell serve`` announced for that port, then the token file in the data
    folder (``WORKCELL_DATA_DIR``, default ``podium-data``)."""
    env = os.environ.get("WORKCELL_API_TOKEN", "").strip()
    if env:
        return env
    announced = local_token_file("workcell", url)
    token = read_token_file(announced) if announced is not None else None
    if token:
        return token
    return read_token_file(Path(os.environ.get("WORKCELL_DATA_DIR") or "podium-data") / "workcell.token")


class WorkcellClientError(PodiumError):
    """The workcell answered with an error; ``status_code`` and ``detail`` say which."""

    def __init__(self, status_code: int, detail: Any) -> None:
        self.status_code, self.detail = status_code, detail
        if isinstance(detail, list):  # a 422's list of errors: their messages
            detail = "; ".join(str(e.get("msg", e)) if isinstance(e, dict) else str(e) for e in detail)
        super().__init__(f"HTTP {status_code}: {detail}")


class WorkflowFailedError(PodiumError):
    """A workflow awaited with ``raise_on_failed``/``raise_on_cancelled`` ended failed or cancelled."""

    def __init__(self, message: str, workflow: Workflow) -> None:
        self.workflow = workflow
        super().__init__(message)


class WorkcellClient:
    """A synchronous client of the workcell REST API (see the module docstring).

    The API token: ``token=``, else userinfo in the URL (``http://podium:<token>@host:8005``), else
    ``WORKCELL_API_TOKEN``, else the token a ``podium workcell serve`` on this machine generated (its
    announcement for a loopback URL's port, then ``<WORKCELL_DATA_DIR or podium-data>/workcell.token``).
    """

    def __init__(
        self,
        workcell_server_url: str = "http://localhost:8005",
        *,
        data_server_url: str | None = None,
        working_directory: str | Path = "./",
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        long_poll_s: float = 10.0,
        token: str | None = None,
    ) -> None:
        bare, url_token = split_url_token(workcell_server_url)
        self.url = bare.rstrip("/")
        self.token = token or url_token or find_workcell_token(self.url)
        data_bare, data_token = split_url_token(data_server_url or self.url)
        self.data_url = data_bare.rstrip("/")
        # The workcell's token goes to a separate data server only when it is the same host and port.
        same = urlsplit(self.data_url).netloc == urlsplit(self.url).netloc
        self._data_token = data_token or (self.token if same else None)
        self.working_directory = Path(working_directory).expanduser()
        self.long_poll_s = long_poll_s
        self._http = httpx.Client(timeout=timeout_s + long_poll_s, transport=transport)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close connections. Idempotent."""
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, base: str | None = None, **kwargs: Any) -> httpx.Response:
        token = self._data_token if base is not None and base != self.url else self.token
        headers = {"Authorization": f"Bearer {token}"} if token else None
        response = self._http.request(method, f"{base or self.url}{path}", headers=headers, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text
            raise WorkcellClientError(response.status_code, detail)
        return response

    def _workflow(self, data: Any) -> Workflow:
        wf = Workflow.model_validate(data)
        wf._datapoint_reader = self.get_datapoint
        return wf

    # --- workflows ------------------------------------------------------------------------------

    def submit_workflow_definition(
        self, workflow_definition: str | Path | WorkflowDefinition | dict[str, Any]
    ) -> str:
        """Store a definition (a YAML path, YAML text, a mapping or a model); return its id."""
        definition = load_workflow_definition(
            Path(workflow_definition)
            if isinstance(workflow_definition, str) and _is_path(workflow_definition)
            else workflow_definition
        )
        return str(
            self._request("POST", "/workflow_definition", json=definition.model_dump(mode="json")).json()
        )

    def get_workflow_definition(self, workflow_definition_id: str) -> WorkflowDefinition:
        """A stored definition."""
        return WorkflowDefinition.model_validate(
            self._request("GET", f"/workflow_definition/{workflow_definition_id}").json()
        )

    def submit_workflow(
        self,
        workflow: str | Path | WorkflowDefinition | dict[str, Any],
        json_inputs: Mapping[str, Any] | None = None,
        file_inputs: Mapping[str, str | Path] | None = None,
        await_completion: bool = True,
        raise_on_failed: bool = True,
        prompt_on_error: bool = False,
        raise_on_cancelled: bool = True,
        *,
        show_progress: bool | None = None,
        timeout_s: float | None = None,
    ) -> Workflow:
        """Submit a workflow (a definition id, a YAML path, a model) with its inputs; by default wait for
        it to end and raise :class:`WorkflowFailedError` if it failed or was cancelled."""
        if isinstance(workflow, str) and _is_ulid(workflow):
            definition_id = workflow
        else:
            definition_id = self.submit_workflow_definition(workflow)
        paths = {k: str(self._absolute(v)) for k, v in (file_inputs or {}).items()}
        data = {
            "workflow_definition_id": definition_id,
            "json_inputs": json.dumps(dict(json_inputs)) if json_inputs else "",
            "file_input_paths": json.dumps(paths) if paths else "",
            "ownership_info": "{}",
        }
        with contextlib.ExitStack() as stack:
            files = [
                ("files", (key, stack.enter_context(Path(path).open("rb")))) for key, path in paths.items()
            ]
            response = self._request("POST", "/workflow", data=data, files=files or None)
        wf = self._workflow(response.json())
        if not await_completion:
            return wf
        return self._await(
            wf,
            prompt_on_error=prompt_on_error,
            raise_on_failed=raise_on_failed,
            raise_on_cancelled=raise_on_cancelled,
            show_progress=show_progress,
            timeout_s=timeout_s,
        )

    start_workflow = submit_workflow

    def query_workflow(
        self, workflow_id: str, *, wait_s: float | None = None, until_terminal: bool = False
    ) -> Workflow:
        """A workflow run; with ``wait_s``, the server answers once it changes (podium servers), or with
        ``until_terminal`` once it ends (MADSci servers ignore both and answer at once)."""
        params: dict[str, Any] | None = None
        if wait_s:
            params = {"wait_s": wait_s, **({"until": "terminal"} if until_terminal else {})}
        return self._workflow(self._request("GET", f"/workflow/{workflow_id}", params=params).json())

    def await_workflow(
        self,
        workflow_id: str,
        prompt_on_error: bool = False,
        raise_on_failed: bool = True,
        raise_on_cancelled: bool = True,
        *,
        show_progress: bool | None = None,
        timeout_s: float | None = None,
        query_frequency: float = 1.0,
    ) -> Workflow:
        """Wait until the workflow ends, showing progress in a terminal."""
        return self._await(
            self.query_workflow(workflow_id),
            prompt_on_error,
            raise_on_failed,
            raise_on_cancelled,
            show_progress=show_progress,
            timeout_s=timeout_s,
            query_frequency=query_frequency,
        )

    def _await(
        self,
        wf: Workflow,
        prompt_on_error: bool = False,
        raise_on_failed: bool = True,
        raise_on_cancelled: bool = True,
        *,
        show_progress: bool | None = None,
        timeout_s: float | None = None,
        query_frequency: float = 1.0,
    ) -> Workflow:
        """:meth:`await_workflow` from a workflow already read (a submission's answer)."""
        workflow_id = wf.workflow_id
        if show_progress is None:
            show_progress = sys.stderr.isatty()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        display = _Progress() if show_progress else None
        try:
            while True:
                if display is not None:
                    display.update(wf)
                if wf.status.terminal:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"workflow {workflow_id} still {wf.state.value} after {timeout_s} s")
                started = time.monotonic()
                wait = (
                    self.long_poll_s
                    if deadline is None
                    else max(0.01, min(self.long_poll_s, deadline - started))
                )
                before = _marker(wf)
                # Without a progress display only the end matters: do not be woken at every step.
                wf = self.query_workflow(workflow_id, wait_s=wait, until_terminal=display is None)
                if _marker(wf) == before and time.monotonic() - started < 0.05 * wait:
                    time.sleep(query_frequency)  # unchanged at once: the server does not long-poll (MADSci)
        finally:
            if display is not None:
                display.stop(wf)
        return self._check(wf, prompt_on_error, raise_on_failed, raise_on_cancelled)

    def _check(
        self, wf: Workflow, prompt_on_error: bool, raise_on_failed: bool, raise_on_cancelled: bool
    ) -> Workflow:
        if prompt_on_error and (wf.status.failed or wf.status.cancelled) and sys.stdin.isatty():
            answer = input(
                f"Workflow {wf.state.value} on step {wf.status.current_step_index}. "
                "Retry from step (index, -1 for that step) or press Enter to continue: "
            ).strip()
            if answer.lstrip("-").isdigit():
                return self.retry_workflow(wf.workflow_id, int(answer), raise_on_failed=raise_on_failed)
        step = wf.current_step
        where = f"step {wf.status.current_step_index} '{step.label if step else '?'}'"
        if wf.status.failed and raise_on_failed:
            errors = "; ".join(str(e.message) for e in (step.result.errors if step and step.result else []))
            raise WorkflowFailedError(
                f"workflow {wf.name} ({wf.workflow_id}) failed on {where}: {errors}", wf
            )
        if wf.status.cancelled and raise_on_cancelled:
            raise WorkflowFailedError(f"workflow {wf.name} ({wf.workflow_id}) was cancelled on {where}", wf)
        return wf

    def retry_workflow(
        self,
        workflow_id: str,
        index: int = -1,
        await_completion: bool = True,
        raise_on_failed: bool = True,
        raise_on_cancelled: bool = True,
        *,
        show_progress: bool | None = None,
    ) -> Workflow:
        """Run a finished workflow again from step ``index`` (default: the step it stopped on)."""
        wf = self._workflow(
            self._request("POST", f"/workflow/{workflow_id}/retry", params={"index": index}).json()
        )
        if not await_completion:
            return wf
        return self.await_workflow(
            workflow_id,
            raise_on_failed=raise_on_failed,
            raise_on_cancelled=raise_on_cancelled,
            show_progress=show_progress,
        )

    def resubmit_workflow(
        self, workflow_id: str, await_completion: bool = True, raise_on_failed: bool = True
    ) -> Workflow:
        """A new run of the same definition with the same inputs."""
        wf = self._workflow(self._request("POST", f"/workflow/{workflow_id}/resubmit").json())
        return (
            self.await_workflow(wf.workflow_id, raise_on_failed=raise_on_failed) if await_completion else wf
        )

    def pause_workflow(self, workflow_id: str) -> Workflow:
        """Pause a workflow."""
        return self._workflow(self._request("POST", f"/workflow/{workflow_id}/pause").json())

    def resume_workflow(self, workflow_id: str) -> Workflow:
        """Resume a paused workflow."""
        return self._workflow(self._request("POST", f"/workflow/{workflow_id}/resume").json())

    def cancel_workflow(self, workflow_id: str) -> Workflow:
        """Cancel a workflow."""
        return self._workflow(self._request("POST", f"/workflow/{workflow_id}/cancel").json())

    def get_active_workflows(self) -> dict[str, Workflow]:
        """Active workflows by id."""
        return {k: self._workflow(v) for k, v in self._request("GET", "/workflows/active").json().items()}

    def get_archived_workflows(self, number: int = 20) -> dict[str, Workflow]:
        """The newest finished workflows by id."""
        data = self._request("GET", "/workflows/archived", params={"number": number}).json()
        return {k: self._workflow(v) for k, v in data.items()}

    def get_workflow_queue(self) -> list[Workflow]:
        """Active workflows in scheduling order."""
        return [self._workflow(v) for v in self._request("GET", "/workflows/queue").json()]

    def clear_completed_workflows(self) -> int:
        """Drop finished workflows from the server's memory (they stay archived); how many."""
        return int(self._request("POST", "/workflows/clear_completed").json()["cleared"])

    # --- workcell and nodes ---------------------------------------------------------------------

    def get_workcell_state(self) -> WorkcellState:
        """The workcell's live state."""
        return WorkcellState.model_validate(self._request("GET", "/state").json())

    def get_nodes(self) -> dict[str, NodeRecord]:
        """Every node with its last reported status and info."""
        return {k: NodeRecord.model_validate(v) for k, v in self._request("GET", "/nodes").json().items()}

    def get_node(self, node_name: str) -> NodeRecord:
        """One node."""
        return NodeRecord.model_validate(self._request("GET", f"/node/{node_name}").json())

    def add_node(self, node_name: str, node_url: str) -> NodeRecord:
        """Add a node to the workcell."""
        data = self._request("POST", "/node", params={"node_name": node_name, "node_url": node_url}).json()
        return NodeRecord.model_validate(data)

    def list_nodes(self) -> dict[str, str]:
        """Node name -> URL."""
        return {k: v.node_url for k, v in self.get_nodes().items()}

    def ping_nodes(self) -> dict[str, bool]:
        """Node name -> whether it answered the workcell's last status poll and is ready."""
        return {k: v.ready for k, v in self.get_nodes().items()}

    def send_admin_command(self, command: str, node: str | None = None) -> Any:
        """An admin command to one node or every node that offers it."""
        return self._request("POST", f"/admin/{command}" + (f"/{node}" if node else "")).json()

    # --- datapoints -----------------------------------------------------------------------------

    def get_datapoint(self, datapoint_id: str) -> DataPoint:
        """A datapoint's record."""
        return DataPoint.model_validate(
            self._request("GET", f"/datapoint/{datapoint_id}", base=self.data_url).json()
        )

    def get_datapoint_value(self, datapoint_id: str) -> Any:
        """A JSON datapoint's value, or a file datapoint's bytes."""
        response = self._request("GET", f"/datapoint/{datapoint_id}/value", base=self.data_url)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def save_datapoint_value(self, datapoint_id: str, output_path: str | Path) -> Path:
        """Write a datapoint's value (file content, or JSON text) to ``output_path``."""
        response = self._request("GET", f"/datapoint/{datapoint_id}/value", base=self.data_url)
        path = Path(output_path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(response.content)
        return path

    def _absolute(self, path: str | Path) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.working_directory / p


def _marker(wf: Workflow) -> tuple[Any, ...]:
    return (wf.status.model_dump(), [s.status for s in wf.steps], tuple(wf.scheduler_metadata.reasons))


def _is_ulid(text: str) -> bool:
    from podium.ids import is_ulid

    return is_ulid(text)


def _is_path(text: str) -> bool:
    return "\n" not in text and (
        text.endswith((".yaml", ".yml", ".json")) or Path(text).expanduser().is_file()
    )


class _Progress:
    """A rich progress bar (steps done of total, the current step and its node), with one line printed
    above it as each step ends."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("[bold]{task.fields[name]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console if console is not None else Console(stderr=True),
            transient=False,
        )
        self._task: Any = None
        self._reported: dict[int, str] = {}
        self._progress.start()

    def update(self, wf: Workflow) -> None:
        step = wf.current_step
        if wf.status.terminal:
            text = wf.status.description
        elif step is not None:
            reasons = "" if wf.status.running else "; ".join(wf.scheduler_metadata.reasons[:1])
            where = f" on {step.node}" if step.node else ""
            text = f"{wf.state.value}: {step.label}{where}" + (f" ({reasons})" if reasons else "")
        else:
            text = wf.state.value
        for i, s in enumerate(wf.steps):
            if (
                s.status.is_terminal
                and s.status.value != "not_ready"
                and self._reported.get(i) != s.status.value
            ):
                self._reported[i] = s.status.value
                mark = {"succeeded": "[green]done[/]", "failed": "[red]failed[/]"}.get(
                    s.status.value, s.status.value
                )
                took = f" in {s.duration.total_seconds():.1f} s" if s.duration is not None else ""
                where = f" on {s.node}" if s.node else ""
                self._progress.console.print(f"  {mark} {i + 1}/{len(wf.steps)} {s.label}{where}{took}")
        if self._task is None:
            self._task = self._progress.add_task(text, total=len(wf.steps) or 1, name=wf.name)
        self._progress.update(self._task, completed=wf.completed_steps, description=text, refresh=True)

    def stop(self, wf: Workflow) -> None:
        self.update(wf)
        self._progress.stop()
