"""Tracing turned on from settings: ``TRACING``/``podium serve --tracing`` builds the server's Tracing with the
exporter it names (otlp, console), and refuses an unknown one or a missing package in one line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from podium.errors import ConfigError, MissingDependencyError
from podium.ops import Tracing, traceparent
from podium.server import ServerSettings, create_app
from podium.testing import EngineHarness
from tests.ops.test_tracing import two_states

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


async def test_the_tracing_setting_traces_jobs_and_hands_workers_their_traceparent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACING", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "lab-server")
    settings = ServerSettings.load(client_token="ct", global_worker_token="wt")
    assert settings.tracing == "console"
    async with EngineHarness(blueprints=[two_states()]) as h:
        app = create_app(h.engine, settings, manage_engine=False)
        t = app.state.podium.tracing
        assert isinstance(t, Tracing)
        exporter = InMemorySpanExporter()  # beside the console exporter the setting chose
        t.provider.add_span_processor(SimpleSpanProcessor(exporter))
        await app.state.podium.start()
        try:
            job_id = await h.create_job("convert")
            await h.settle()
            transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
                headers = {"X-Worker-ID": "w1", "X-Worker-Token": "wt"}
                body = {"worker_id": "w1", "supported_skills": [{"name": "convert"}]}
                r = await http.post("/_worker/workers/register", json=body, headers=headers)
                assert r.status_code == 200
                task = (await http.get("/_worker/workers/w1/tasks/next", headers=headers)).json()
                assert task["tracing_context"] == {"traceparent": traceparent(job_id, task["task_id"])}
                result = {
                    **{k: task[k] for k in ("job_id", "task_id")},
                    "worker_id": "w1",
                    "status": "success",
                }
                r = await http.post("/_worker/tasks/result", json={**result, "data": {}}, headers=headers)
                assert r.status_code == 200
            assert (await h.join(job_id)).status == "finished"
        finally:
            await app.state.podium.stop()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"job convert", "task convert"} <= set(spans)
    assert spans["job convert"].resource.attributes["service.name"] == "lab-server"


def test_no_tracing_by_default() -> None:
    async def check() -> None:
        async with EngineHarness(blueprints=[two_states()]) as h:
            app = create_app(h.engine, ServerSettings(), manage_engine=False)
            assert app.state.podium.tracing is None

    import asyncio

    asyncio.run(check())


def test_the_console_exporter_prints_each_span_as_json() -> None:
    out = io.StringIO()
    t = Tracing.from_exporter("console", out=out)
    t._span("job x", 1, 2, None, 10.0, 11.5, {"podium.job_id": "j"})
    t.close()
    span = json.loads(out.getvalue())
    assert span["name"] == "job x" and span["attributes"] == {"podium.job_id": "j"}
    assert span["context"]["trace_id"] == f"0x{1:032x}"


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="tracing: unknown exporter 'jaeger'"):
        Tracing.from_exporter("jaeger")
    with pytest.raises(ConfigError, match="tracing"):
        ServerSettings.load(tracing="jaeger")


def test_otlp_without_its_exporter_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'podium\[otel\]'"):
        Tracing.from_exporter("otlp")


def test_otlp_sends_to_the_endpoint_the_otel_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http.trace_exporter")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    t = Tracing.from_exporter("otlp")
    exporter = t.provider._active_span_processor._span_processors[0]._batch_processor._exporter
    assert exporter._endpoint == "http://127.0.0.1:1/v1/traces"
    t.provider.shutdown()


def test_serve_refuses_a_bad_tracing_setting_in_one_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "podium", "serve", "--port", "0", "--storage", "memory://"]
    out = subprocess.run(
        [*cmd, "--tracing", "jaeger"], capture_output=True, text=True, timeout=30, cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert "tracing" in out.stderr and "jaeger" in out.stderr
    assert "Traceback" not in out.stderr
