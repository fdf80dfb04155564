"""File datapoints on S3 (WORKCELL_S3_*): each file datapoint (a workflow's file input, a step's output file)
is copied to ``datapoints/<id>/<name>`` after it is recorded, read back from S3 when its local file is gone
(``GET /datapoint/{id}/value``, a resubmitted run's inputs), and the run never waits on S3. On moto's server."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.blobs import BlobStore, S3Settings
from podium.clock import system_clock
from podium.errors import ConfigError
from podium.testing import WorkcellHarness
from podium.workcell import InProcessNode, WorkcellDefinition, WorkcellManagerSettings
from podium.workcell.server import create_app

PROTOCOL = b"aspirate 10\ndispense 10\n" * 1000
WORKFLOW: dict[str, Any] = {
    "name": "proto",
    "parameters": {"file_inputs": [{"key": "protocol"}]},
    "steps": [{"name": "run", "node": "lh", "action": "run_protocol", "files": {"protocol": "protocol"}}],
}


def settings_for(s3: S3Settings, **kw: Any) -> WorkcellManagerSettings:
    values: dict[str, Any] = {
        "scheduler_update_interval": 30.0,
        "node_update_interval": 30.0,
        "s3_endpoint_url": s3.endpoint_url,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_bucket": s3.bucket,
        **kw,
    }
    return WorkcellManagerSettings(**values)


def harness(tmp_path: Path, settings: WorkcellManagerSettings, seen: list[bytes]) -> WorkcellHarness:
    def run_protocol(protocol: Path) -> Path:
        text = protocol.read_bytes()
        seen.append(text)
        out = tmp_path / "node-out" / "report.csv"
        out.parent.mkdir(exist_ok=True)
        out.write_bytes(b"lines," + str(text.count(b"\n")).encode())
        return out

    workcell = WorkcellDefinition.model_validate({"name": "cell", "nodes": {"lh": "inprocess://lh"}})
    nodes = {"lh": InProcessNode("lh", {"run_protocol": run_protocol})}
    return WorkcellHarness(
        workcell, nodes=nodes, clock=system_clock, data_dir=tmp_path / "data", settings=settings
    )


async def test_file_datapoints_are_copied_to_s3_and_served_from_it_once_local_copies_are_gone(
    s3: S3Settings, tmp_path: Path
) -> None:
    blobs = BlobStore(s3)
    seen: list[bytes] = []
    async with harness(tmp_path, settings_for(s3), seen) as h:
        engine = h.workcell
        wf = await engine.submit(
            WORKFLOW_DEF(),
            file_inputs={"protocol": ("protocol.txt", PROTOCOL)},
        )
        done = await h.join(wf.workflow_id, skip_time=False)
        assert done.status.completed, done.status.description
        await engine.datapoints.drain()
        dps = await engine.datapoints.for_workflow(wf.workflow_id)
        files = {dp.label: dp for dp in dps if dp.data_type == "file"}
        assert set(files) == {"protocol", "file"}
        # Then each file is in the bucket under datapoints/<id>/<name>, byte for byte (size and ETag = MD5)
        for dp in files.values():
            local = Path(dp.path or "")
            meta = await blobs.head(f"datapoints/{dp.datapoint_id}/{local.name}")
            assert meta is not None and meta.size == local.stat().st_size == dp.size_bytes
            assert meta.etag == hashlib.md5(local.read_bytes()).hexdigest()
        # When the local copies are gone, the data route streams them back from S3
        for dp in files.values():
            Path(dp.path or "").unlink()
        app = create_app(engine, manage_engine=False, api_tokens=["t0k"])
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://wc", headers={"X-Client-Token": "t0k"}
        ) as http:
            r = await http.get(f"/datapoint/{files['protocol'].datapoint_id}/value")
            assert r.status_code == 200 and r.content == PROTOCOL
            assert r.headers["content-length"] == str(len(PROTOCOL))
            assert 'filename="protocol.txt"' in r.headers["content-disposition"]
            r = await http.get(f"/datapoint/{files['file'].datapoint_id}/value")
            assert r.status_code == 200 and r.content == b"lines,2000"
            # a file neither here nor on S3 is a 404 naming the datapoint, not a 500
            await blobs.delete([f"datapoints/{files['file'].datapoint_id}/report.csv"])
            r = await http.get(f"/datapoint/{files['file'].datapoint_id}/value")
            assert r.status_code == 404 and files["file"].datapoint_id in r.text
        # And a resubmitted run gets its input file back from S3 (the node reads the same bytes)
        again = await engine.resubmit(wf.workflow_id)
        assert (await h.join(again.workflow_id, skip_time=False)).status.completed
        assert seen == [PROTOCOL, PROTOCOL]
        assert Path(files["protocol"].path or "").read_bytes() == PROTOCOL


def WORKFLOW_DEF() -> Any:
    from podium.workcell import WorkflowDefinition

    return WorkflowDefinition.model_validate(WORKFLOW)


async def test_a_failing_bucket_never_holds_the_run_and_the_local_file_stays(
    s3: S3Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []
    settings = settings_for(s3, s3_bucket="no-such-bucket")  # S3 refuses every upload
    async with harness(tmp_path, settings, seen) as h:
        wf = await h.workcell.submit(WORKFLOW_DEF(), file_inputs={"protocol": ("protocol.txt", PROTOCOL)})
        assert (await h.join(wf.workflow_id, skip_time=False)).status.completed
        with caplog.at_level(logging.WARNING, logger="podium.workcell"):
            await h.workcell.datapoints.drain()
        dps = await h.workcell.datapoints.for_workflow(wf.workflow_id)
        for dp in dps:
            if dp.data_type == "file":
                assert Path(dp.path or "").is_file()
    assert "S3 upload failed, the local file stays" in caplog.text


def test_s3_settings_come_from_workcell_s3_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKCELL_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("WORKCELL_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("WORKCELL_S3_SECRET_KEY", "sekrit-value")
    monkeypatch.setenv("WORKCELL_S3_BUCKET", "lab-data")
    s3 = WorkcellManagerSettings.load().s3_settings()
    assert s3 is not None and (s3.endpoint_url, s3.bucket, s3.access_key) == (
        "http://127.0.0.1:9000",
        "lab-data",
        "k",
    )
    assert "sekrit-value" not in repr(WorkcellManagerSettings.load())
    monkeypatch.delenv("WORKCELL_S3_ENDPOINT_URL")
    monkeypatch.delenv("WORKCELL_S3_ACCESS_KEY")
    monkeypatch.delenv("WORKCELL_S3_SECRET_KEY")
    assert WorkcellManagerSettings.load().s3_settings() is None


def test_incomplete_s3_settings_are_refused_naming_what_is_missing() -> None:
    with pytest.raises(ConfigError, match="s3_secret_key"):
        WorkcellManagerSettings.load(s3_endpoint_url="http://127.0.0.1:9000", s3_access_key="k")
    with pytest.raises(ConfigError, match="s3_endpoint_url 'minio:9000'"):
        WorkcellManagerSettings.load(s3_endpoint_url="minio:9000", s3_access_key="k", s3_secret_key="s")
