"""Run inside MADSci 0.8.1's own venv: MADSci's WorkcellClient submits each workflow of MADSci's example lab
to podium, as its YAML file, and waits for it.

argv: workcell_url, workflows_dir, inputs_json (workflow file name -> {"json_inputs", "file_inputs"}).
Prints one JSON line: per workflow, its status, the status of each step, and each step's datapoints with
their values (JSON values as they are; files as their first bytes).
"""

import json
import sys
from pathlib import Path

from madsci.client.data_client import DataClient
from madsci.client.workcell_client import WorkcellClient

url, folder, inputs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
client = WorkcellClient(url)
data = DataClient()
seen = {}
for path in sorted(folder.glob("*.workflow.yaml")):
    given = inputs.get(path.name, {})
    submitted = client.submit_workflow(
        str(path),
        json_inputs=given.get("json_inputs"),
        file_inputs=given.get("file_inputs"),
        await_completion=False,
        prompt_on_error=False,
    )
    wf = client.await_workflow(
        submitted.workflow_id,
        prompt_on_error=False,
        raise_on_failed=False,
        raise_on_cancelled=False,
        query_frequency=0.1,
        display_mode="plain",
    )
    steps = []
    for step in wf.steps:
        datapoints = {}
        ids = step.result.datapoints.model_dump() if step.result and step.result.datapoints else {}
        for label, dp_id in ids.items():
            if dp_id is None:
                continue
            value = data.get_datapoint_value(dp_id)
            datapoints[label] = value[:40].decode(errors="replace") if isinstance(value, bytes) else value
        steps.append(
            {
                "name": step.name,
                "node": step.node,
                "action": step.action,
                "status": str(step.status.value),
                "datapoints": datapoints,
                "errors": [e.message for e in (step.result.errors if step.result else [])],
            }
        )
    seen[path.name] = {
        "completed": wf.status.completed,
        "description": wf.status.description,
        "steps": steps,
    }
print(json.dumps(seen))
