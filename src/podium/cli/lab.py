"""The daily workcell commands: ``podium submit|workflows|workflow|pause|resume|cancel|retry|nodes|node``.

Each talks to a workcell manager (``--url``, ``PODIUM_WORKCELL_URL`` or ``WORKCELL_SERVER_URL``; default
``http://localhost:8005``) with the token ``WorkcellClient`` finds (``--token``, ``WORKCELL_API_TOKEN``, the
token a local ``podium workcell serve`` announced). Tables for people, ``--json`` for scripts; exit codes in
:mod:`podium.cli._output`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from podium.cli._output import (
    WORKCELL_TOKEN,
    WORKCELL_URL,
    ExitCode,
    fail,
    one_line_errors,
    parse_pairs,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from podium.client.workcell import WorkcellClient
    from podium.wire.workcell import NodeRecord, Workflow

__all__ = ["commands", "node_state"]

DEFAULT_URL = "http://localhost:8005"
NODE_COMMANDS = ("reset", "pause", "resume", "lock", "unlock", "cancel", "shutdown")
_JSON = typer.Option("--json", help="Print JSON (for scripts).")


def _client(url: str, token: str | None) -> WorkcellClient:
    from podium.client.workcell import WorkcellClient

    return WorkcellClient(url, token=token)


def _step_of(wf: Workflow) -> str:
    total = len(wf.steps)
    if wf.status.completed:
        return f"{total}/{total}"
    return f"{min(wf.status.current_step_index + 1, total)}/{total}"


def _summary(wf: Workflow) -> list[Any]:
    waiting = "" if wf.status.terminal else "; ".join(wf.scheduler_metadata.reasons)
    return [wf.workflow_id, wf.name, wf.state.value, _step_of(wf), waiting]


def submit(
    workflow: Annotated[Path, typer.Argument(help="A *.workflow.yaml file.", show_default=False)],
    inputs: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", "--param", "-p", help="name=value (JSON values allowed); repeat."),
    ] = None,
    files: Annotated[
        list[str] | None, typer.Option("--file", "-f", help="name=path of a file input.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow it to the end: progress, then its datapoints.")
    ] = False,
    timeout_s: Annotated[
        float | None, typer.Option("--timeout", min=0.0, help="With --wait: give up after this many seconds.")
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """Submit a workflow; with --wait, show each step as it runs and print the datapoints at the end."""
    try:
        json_inputs = parse_pairs(inputs, parse=True, option="--input")
        file_inputs = parse_pairs(files, parse=False, option="--file")
    except ValueError as exc:
        raise fail(str(exc), ExitCode.USAGE) from None
    for name, path in file_inputs.items():
        if not Path(path).is_file():
            raise fail(f"--file {name}={path}: no such file", ExitCode.USAGE)
    if not workflow.is_file():
        raise fail(f"{workflow}: no such workflow file", ExitCode.USAGE)
    with one_line_errors(url), _client(url, token) as client:
        wf = client.submit_workflow(
            workflow,
            json_inputs,
            file_inputs,
            await_completion=wait,
            raise_on_failed=False,
            raise_on_cancelled=False,
            show_progress=wait and not as_json,
            timeout_s=timeout_s,
        )
        datapoints = _datapoints(client, wf) if wait else []
    if as_json:
        print_json({"workflow": wf.model_dump(mode="json"), "datapoints": datapoints})
    else:
        typer.echo(f"{wf.workflow_id} {wf.state.value}")
        if datapoints:
            print_table(
                ["step", "label", "datapoint", "value"],
                [[d["step"], d["label"], d["datapoint_id"], d["value"]] for d in datapoints],
                title="datapoints",
            )
    if wait and (wf.status.failed or wf.status.cancelled):
        raise fail(_why_it_ended(wf), ExitCode.FAILED)


def _why_it_ended(wf: Workflow) -> str:
    step = wf.current_step
    where = f"step {wf.status.current_step_index} {step.label!r}" if step is not None else "a step"
    if wf.status.cancelled:
        return f"workflow {wf.name} ({wf.workflow_id}) was cancelled on {where}"
    errors = "; ".join(str(e.message) for e in (step.result.errors if step and step.result else []))
    return f"workflow {wf.name} ({wf.workflow_id}) failed on {where}: {errors or 'no error given'}"


def _datapoints(client: WorkcellClient, wf: Workflow) -> list[dict[str, Any]]:
    """Every datapoint the run's steps produced: its label, id and (for a value) the value; a file shows
    its name (``WorkcellClient.save_datapoint_value`` downloads it)."""
    out = []
    for step in wf.steps:
        for label, dp_id in ((step.result.datapoints or {}) if step.result else {}).items():
            dp = client.get_datapoint(str(dp_id))
            data = dp.model_dump(mode="json")
            value = data.get("value")
            if data.get("data_type") != "json":
                size = f", {dp.size_bytes:,} bytes" if dp.size_bytes is not None else ""
                value = f"file {Path(dp.path or dp.label or '?').name}{size}"
            out.append(
                {
                    "step": step.label,
                    "label": label,
                    "datapoint_id": str(dp_id),
                    "data_type": data.get("data_type"),
                    "value": value if isinstance(value, str) else json.dumps(value),
                }
            )
    return out


def workflows(
    archived: Annotated[
        int, typer.Option("--archived", min=0, max=1000, help="Also the N most recent ended ones.")
    ] = 0,
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """The active and queued workflows (and, with --archived N, recent ended ones)."""
    with one_line_errors(url), _client(url, token) as client:
        runs = dict(client.get_active_workflows())
        for wf in client.get_workflow_queue():
            runs.setdefault(wf.workflow_id, wf)
        if archived:
            runs.update(client.get_archived_workflows(archived))
    ordered = sorted(runs.values(), key=lambda w: w.workflow_id)
    if as_json:
        print_json([w.model_dump(mode="json") for w in ordered])
        return
    print_table(["workflow", "name", "state", "step", "waiting for"], [_summary(w) for w in ordered])


def workflow(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's id.", show_default=False)],
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """One workflow: its steps (status, duration, datapoints, errors) and why it waits."""
    with one_line_errors(url), _client(url, token) as client:
        wf = client.query_workflow(workflow_id)
    if as_json:
        print_json(wf.model_dump(mode="json"))
        return
    rows = []
    for i, s in enumerate(wf.steps):
        result = s.result
        dps = ", ".join(f"{k}={v}" for k, v in ((result.datapoints or {}) if result else {}).items())
        errors = "; ".join(str(e.message) for e in (result.errors if result else []) if e.message)
        took = f"{s.duration.total_seconds():.2f} s" if s.duration is not None else ""
        rows.append([i, s.label, s.node or "", s.action, s.status.value, took, dps, errors])
    print_table(
        ["#", "step", "node", "action", "status", "took", "datapoints", "errors"],
        rows,
        title=f"{wf.name} {wf.workflow_id} ({wf.state.value})",
    )
    if wf.scheduler_metadata.reasons and not wf.status.terminal:
        typer.echo("waiting: " + "; ".join(wf.scheduler_metadata.reasons))


def _operation(name: str, doc: str) -> Callable[..., None]:
    def command(
        workflow_id: Annotated[str, typer.Argument(help="The workflow's id.", show_default=False)],
        as_json: Annotated[bool, _JSON] = False,
        url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
        token: Annotated[str | None, WORKCELL_TOKEN] = None,
    ) -> None:
        with one_line_errors(url), _client(url, token) as client:
            wf = getattr(client, f"{name}_workflow")(workflow_id)
        _print_state(wf, as_json)

    command.__doc__ = doc
    command.__name__ = name
    return command


def retry(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's id.", show_default=False)],
    from_step: Annotated[
        int | None,
        typer.Option(
            "--from-step", min=0, help="The step to start from (0-based; default: where it stopped)."
        ),
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """Retry a failed, cancelled or completed workflow, from the step it stopped on or --from-step N."""
    with one_line_errors(url), _client(url, token) as client:
        wf = client.retry_workflow(
            workflow_id, -1 if from_step is None else from_step, await_completion=False
        )
    _print_state(wf, as_json)


def _print_state(wf: Workflow, as_json: bool) -> None:
    if as_json:
        print_json(wf.model_dump(mode="json"))
    else:
        typer.echo(f"{wf.workflow_id} {wf.state.value}")


def node_state(node: NodeRecord) -> str:
    """One word for a node's condition (its ``condition`` in ``--json``): disconnected, errored, locked, paused, busy, initializing, ready,
    not ready or unknown (the first that holds, in that order)."""
    status = node.status
    if status is None:
        return "unknown"
    for flag in ("disconnected", "errored", "locked", "paused", "busy", "initializing"):
        if status.get(flag):
            return flag
    return "ready" if node.ready else "not ready"


def _current_action(node: NodeRecord) -> str:
    running = (node.status or {}).get("running_actions") or []
    return ", ".join(str(a) for a in sorted(running)) if isinstance(running, list | set | tuple) else ""


def nodes(
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """The workcell's nodes: status (idle, busy, paused, errored, locked, disconnected), current action."""
    with one_line_errors(url), _client(url, token) as client:
        found = client.get_nodes()
    if as_json:
        print_json(
            {name: {**n.model_dump(mode="json"), "condition": node_state(n)} for name, n in found.items()}
        )
        return
    rows = [
        [name, node_state(n), _current_action(n), n.status_description, n.node_url]
        for name, n in sorted(found.items())
    ]
    print_table(["node", "condition", "running", "description", "url"], rows)


def node(
    name: Annotated[str, typer.Argument(help="The node's name.", show_default=False)],
    command: Annotated[
        str | None,
        typer.Argument(help=f"One of {', '.join(NODE_COMMANDS)}; omit to show the node.", show_default=False),
    ] = None,
    as_json: Annotated[bool, _JSON] = False,
    url: Annotated[str, WORKCELL_URL] = DEFAULT_URL,
    token: Annotated[str | None, WORKCELL_TOKEN] = None,
) -> None:
    """Show a node, or send it an admin command (reset an errored node, pause, resume, lock, unlock)."""
    if command is not None and command not in NODE_COMMANDS:
        raise fail(f"unknown node command {command!r}: use one of {', '.join(NODE_COMMANDS)}", ExitCode.USAGE)
    with one_line_errors(url), _client(url, token) as client:
        if command is not None:
            answer = client.send_admin_command(command, name)
        record = client.get_node(name)
    if as_json:
        doc: dict[str, Any] = {
            "node": name,
            **record.model_dump(mode="json"),
            "condition": node_state(record),
        }
        if command is not None:
            doc["answer"] = answer
        print_json(doc)
        return
    if command is not None:
        typer.echo(f"{name}: {command} sent; now {node_state(record)}")
        return
    actions = sorted(record.actions or {})
    print_table(
        ["field", "value"],
        [
            ["condition", node_state(record)],
            ["description", record.status_description],
            ["running", _current_action(record)],
            ["url", record.node_url],
            ["actions", ", ".join(actions)],
        ],
        title=name,
    )


commands: dict[str, Callable[..., None]] = {
    "submit": submit,
    "workflows": workflows,
    "workflow": workflow,
    "pause": _operation("pause", "Pause a workflow (a running step finishes first)."),
    "resume": _operation("resume", "Resume a paused workflow."),
    "cancel": _operation("cancel", "Cancel a workflow."),
    "retry": retry,
    "nodes": nodes,
    "node": node,
}
"""Registered as top-level ``podium`` commands."""
