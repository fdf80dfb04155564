"""Run inside MADSci 0.8.1's own venv: MADSci's WorkcellClient submits a workflow to podium and reads it.

argv: workcell_url. Prints one JSON line with what it saw.
"""

import json
import sys

from madsci.client.workcell_client import WorkcellClient
from madsci.common.types.step_types import StepDefinition
from madsci.common.types.workflow_types import WorkflowDefinition

url = sys.argv[1]
client = WorkcellClient(url)
nodes = client.get_nodes()
state = client.get_workcell_state()
wf_def = WorkflowDefinition(
    name="interop",
    parameters=[{"name": "wavelength", "default": 450}],
    steps=[
        StepDefinition(name="home", key="home", node="robotarm_1", action="home"),
        StepDefinition(
            name="read",
            key="read",
            node="platereader_1",
            action="read_plate",
            args={"wavelength_nm": 600, "label": "interop"},
            locations={"plate": "reader_tray"},
        ),
    ],
)
wf = client.submit_workflow(wf_def, json_inputs={"wavelength": 500}, prompt_on_error=False)
dp_ids = wf.steps[1].result.datapoints.model_dump()
summary = wf.get_datapoint("read", "json_result")
queried = client.query_workflow(wf.workflow_id)
archived = client.get_archived_workflows(5)
# podium runs a workflow as an engine job: retry (from a step of a completed run) and resubmit are job
# operations behind MADSci's own routes.
retried = client.retry_workflow(wf.workflow_id, index=1, prompt_on_error=False)
again = client.resubmit_workflow(wf.workflow_id, prompt_on_error=False)
bad = None
try:
    client.submit_workflow(
        WorkflowDefinition(name="bad", steps=[StepDefinition(name="Fly", node="robotarm_1", action="fly")]),
        await_completion=False,
    )
except Exception as exc:
    bad = getattr(getattr(exc, "response", None), "status_code", None)
print(
    json.dumps(
        {
            "nodes": sorted(nodes),
            "arm_ready": nodes["robotarm_1"].status.ready,
            "arm_actions": sorted(nodes["robotarm_1"].info.actions),
            "state_nodes": sorted(state.nodes),
            "completed": wf.status.completed,
            "step_status": [str(s.status.value) for s in wf.steps],
            "datapoint_labels": sorted(dp_ids),
            "summary_wells": summary.value["n_wells"],
            "queried_index": queried.status.current_step_index,
            "archived": wf.workflow_id in archived,
            "bad_status": bad,
            "retried": [
                retried.workflow_id == wf.workflow_id,
                retried.status.completed,
                len(retried.steps[0].history),
                len(retried.steps[1].history),
            ],
            "resubmitted": [again.workflow_id != wf.workflow_id, again.status.completed],
        }
    )
)
