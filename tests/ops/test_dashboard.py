"""docs/ops/grafana.json: valid, and every metric it queries is one the server exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path

from podium.server import ServerSettings, create_app
from podium.testing import EngineHarness

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "ops" / "grafana.json"
PROMQL_WORDS = {"sum", "by", "rate", "histogram_quantile", "le", "max", "without"}


async def exposed_names() -> set[str]:
    async with EngineHarness() as h:
        app = create_app(h.engine, ServerSettings(client_token="ct"), manage_engine=False)
        names: set[str] = set()
        for family in app.state.podium.metrics.registry.collect():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(
                family.type, [""]
            )
            names |= {family.name + s for s in suffixes}
        return names


async def test_every_query_names_an_exposed_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(dashboard["panels"]) >= 15 and dashboard["uid"] == "podium-ops"
    used = {
        word
        for expr in exprs
        for word in re.findall(r"\b([a-z][a-z0-9_]*)\b(?=\s*[\[{)])", re.sub(r"\bby\s*\([^)]*\)", "", expr))
        if word not in PROMQL_WORDS
    }
    # every metric family of the issue has a panel
    for name in (
        "orchestrator_jobs_total",
        "orchestrator_task_queue_length",
        "podium_workers",
        "podium_workflow_steps_total",
        "podium_workcell_node_status",
        "podium_webhooks_total",
        "podium_store_commit_seconds_bucket",
        "orchestrator_ratelimit_blocked_total",
    ):
        assert name in used, name
    missing = used - await exposed_names()
    assert not missing, f"the dashboard queries metrics nobody exposes: {sorted(missing)}"
