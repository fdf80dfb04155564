"""``task_files`` injected into blueprint handlers and into podium.worker skills (Avtomatika's surface), on a
real S3-compatible server: transfers in the job's history, the job's objects and folder removed at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium.blobs import BlobStore, S3Settings, TaskFiles
from podium.client import AsyncJobClient
from podium.clock import system_clock
from podium.engine import ActionFactory, Blueprint
from podium.testing import EngineHarness
from podium.worker import Worker
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, running_stack


def s3_config(s3: S3Settings, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "S3_ACCESS_KEY": s3.access_key,
        "S3_SECRET_KEY": s3.secret_key,
        "S3_DEFAULT_BUCKET": s3.bucket,
        "TASK_FILES_DIR": str(tmp_path / "engine-files"),
        **extra,
    }


def pipeline() -> Blueprint:
    bp = Blueprint("plate_report")

    @bp.handler(is_start=True)
    async def start(task_files: Any, initial_data: dict[str, Any], actions: ActionFactory) -> None:
        raw = await task_files.read_json(initial_data["input"])
        await task_files.write_json("report.json", {"wells": len(raw["wells"]), "max": max(raw["wells"])})
        actions.go_to("done")

    @bp.handler(is_end=True)
    async def done() -> None: ...

    return bp


async def test_handlers_get_task_files_and_the_job_cleans_up(s3: S3Settings, tmp_path: Path) -> None:
    blobs = BlobStore(s3)
    # Given a job's input on S3 (uploaded by a client), named by its URI in the job's data
    source = tmp_path / "input.json"
    source.write_text('{"wells": [0.1, 0.9, 0.4]}')
    await blobs.upload_file(source, "inputs/plate-7.json")
    async with EngineHarness(blueprints=[pipeline()], clock=system_clock, **s3_config(s3, tmp_path)) as h:
        job_id = await h.create_job("plate_report", {"input": f"s3://{s3.bucket}/inputs/plate-7.json"})
        # When its handler reads it through task_files and writes a report
        assert (await h.join(job_id)).status == "finished"
        # Then every transfer is in the job's history, with what it moved
        history = await h.engine.job_history(job_id)
        audit = [e.data for e in history if e.event == "s3_operation"]
        assert [a["operation"] for a in audit] == ["download", "upload"]
        assert audit[1]["s3_uri"] == f"s3://{s3.bucket}/jobs/{job_id}/report.json"
        assert audit[1]["size"] == len(b'{"wells":3,"max":0.9}') and audit[1]["etag"]
        assert audit[0]["etag"] == (await blobs.head("inputs/plate-7.json")).etag  # type: ignore[union-attr]
    # And, the job having ended (the engine's stop waits for its cleanups), its objects and local folder are
    # gone, while the client's input outside the job's prefix stays
    assert await blobs.list(f"jobs/{job_id}/") == []
    assert not (tmp_path / "engine-files" / job_id).exists()
    assert await blobs.head("inputs/plate-7.json") is not None


async def test_cleanup_can_be_turned_off(s3: S3Settings, tmp_path: Path) -> None:
    blobs = BlobStore(s3)
    source = tmp_path / "input.json"
    source.write_text('{"wells": [1.0]}')
    await blobs.upload_file(source, "inputs/p.json")
    config = s3_config(s3, tmp_path, S3_AUTO_CLEANUP=False)
    async with EngineHarness(blueprints=[pipeline()], clock=system_clock, **config) as h:
        job_id = await h.create_job("plate_report", {"input": f"s3://{s3.bucket}/inputs/p.json"})
        assert (await h.join(job_id)).status == "finished"
    assert [m.key for m in await blobs.list(f"jobs/{job_id}/")] == [f"jobs/{job_id}/report.json"]


async def test_without_s3_settings_task_files_is_none() -> None:
    seen: list[Any] = []
    bp = Blueprint("plain")

    @bp.handler(is_start=True)
    async def start(task_files: Any, actions: ActionFactory) -> None:
        seen.append(task_files)
        actions.go_to("done")

    @bp.handler(is_end=True)
    async def done() -> None: ...

    async with EngineHarness(blueprints=[bp]) as h:
        assert (await h.join(await h.create_job("plain"))).status == "finished"
    assert seen == [None]


async def test_worker_skills_get_task_files(s3: S3Settings, tmp_path: Path) -> None:
    blobs = BlobStore(s3)
    source = tmp_path / "in.mov"
    source.write_text("frames")
    await blobs.upload_file(source, "inputs/in.mov")
    folders: list[Path] = []
    async with running_stack() as stack:
        worker = Worker(
            worker_id="gpu-s3",
            server_url=stack.url,
            token=WORKER_TOKEN,
            heartbeat_interval_s=0.2,
            poll_timeout_s=2.0,
            s3=s3,
            task_files_dir=str(tmp_path / "worker-files"),
        )

        @worker.task("video_transcoding")
        async def transcode(params: dict[str, Any], task_files: TaskFiles) -> dict[str, Any]:
            local = await task_files.download(params["path"])
            folders.append(task_files.local_dir)
            task_files.path("out.mp4").write_bytes(local.read_bytes()[::-1])
            return {"output_path": await task_files.upload("out.mp4")}

        async with worker, AsyncJobClient(stack.url, token=CLIENT_TOKEN) as jobs:
            job_id = await jobs.submit("transcode", {"path": f"s3://{s3.bucket}/inputs/in.mov"})
            view = await jobs.wait(job_id, timeout_s=20)
    # The skill read its input by URI and wrote its output under the job's prefix
    assert view.status == "finished"
    assert await TaskFiles(blobs, job_id, tmp_path / "check").read_text("out.mp4") == "semarf"
    # and, the task over (the worker's stop waits for its tasks), the worker's folder for it is gone
    assert folders and not folders[0].exists()
