"""Drive MADSci 0.8.1's workcell manager with MADSci's own WorkcellClient; run by the MADSci peer venv's python.

Usage: ``python madsci_wc_driver.py CONFIG_JSON`` with ``workcell_url``, ``node_url`` (a node of the
workcell, for the node round trip), ``ten_reps`` (runs of the 10-step workflow) and ``queued`` (how many
3-step workflows to queue at once; 0 skips). Prints ``RESULT <json>``.

Completion is observed by ``query_workflow`` every ``poll_s`` (default 0.05 s), much finer than
``WorkcellClient.await_workflow``'s own 2 s, so the figures are the manager's, not the client's polling.
The node round trip is MADSci's own ``RestNodeClient.send_action`` of the same no-op action on the same
node, measured in the same run.
"""

import json
import statistics
import sys
import time

from madsci.client.node.rest_node_client import RestNodeClient
from madsci.client.workcell_client import WorkcellClient
from madsci.common.types.action_types import ActionRequest
from madsci.common.types.step_types import StepDefinition
from madsci.common.types.workflow_types import WorkflowDefinition

NODES = ("robotarm_1", "liquidhandler_1", "platereader_1")
ACTIONS = {"robotarm_1": "home", "liquidhandler_1": "refill_tips", "platereader_1": "read_plate"}


def wait_terminal(client: WorkcellClient, workflow_id: str, poll_s: float, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while True:
        wf = client.query_workflow(workflow_id)
        if wf.status.terminal:
            return wf
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow {workflow_id} not terminal after {timeout_s} s: {wf.status}")
        time.sleep(poll_s)


def node_round_trip(url: str, n: int = 20) -> float:
    node = RestNodeClient(url)
    node.send_action(ActionRequest(action_name="home", args={}))
    t = time.perf_counter()
    for _ in range(n):
        result = node.send_action(ActionRequest(action_name="home", args={}))
        assert result.status.value == "succeeded", result
    return (time.perf_counter() - t) / n


def main() -> None:
    cfg = json.loads(sys.argv[1])
    poll_s = float(cfg.get("poll_s", 0.05))
    timeout_s = float(cfg.get("timeout_s", 300))
    client = WorkcellClient(cfg["workcell_url"])
    out: dict = {"poll_s": poll_s}
    # "round_trip": false leaves the node alone before the workflows (so its requests are the manager's)
    out["node_round_trip_s"] = node_round_trip(cfg["node_url"]) if cfg.get("round_trip", True) else 0.0

    ten = WorkflowDefinition(
        name="ten",
        steps=[
            StepDefinition(name=f"s{i}", key=f"s{i}", node="robotarm_1", action="home") for i in range(10)
        ],
    )
    ten_id = client.submit_workflow_definition(ten)
    times = []
    for _ in range(int(cfg.get("ten_reps", 1))):
        t = time.perf_counter()
        wf = client.submit_workflow(ten_id, await_completion=False, prompt_on_error=False)
        wf = wait_terminal(client, wf.workflow_id, poll_s, timeout_s)
        times.append(time.perf_counter() - t)
        assert wf.status.completed, wf.status
    out["ten_step_runs_s"] = times
    out["ten_step_s"] = statistics.median(times)

    queued = int(cfg.get("queued", 0))
    if queued:
        def_ids = []
        for i in range(3):
            order = NODES[i:] + NODES[:i]
            steps = [
                StepDefinition(name=f"{n}", key=f"k{j}", node=n, action=ACTIONS[n])
                for j, n in enumerate(order)
            ]
            def_ids.append(client.submit_workflow_definition(WorkflowDefinition(name=f"w{i}", steps=steps)))
        t = time.perf_counter()
        runs = [
            client.submit_workflow(def_ids[i % 3], await_completion=False, prompt_on_error=False)
            for i in range(queued)
        ]
        out["submit_s"] = time.perf_counter() - t
        results = [wait_terminal(client, r.workflow_id, poll_s, timeout_s) for r in runs]
        out["makespan_s"] = time.perf_counter() - t
        out["queued"] = queued
        out["queued_completed"] = sum(1 for r in results if r.status.completed)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
