"""S3 payload offloading, end to end: a blueprint's handler reads its input from S3 and writes a report
there through ``task_files``; the job's history shows each transfer (size, ETag); when the job ends its files
are cleaned up.

It starts its own S3-compatible server (moto's server mode, on loopback) so it runs anywhere:

    pip install 'podium[s3]' 'moto[server]'
    python examples/ops/s3_round_trip.py

Against real S3 (or MinIO), set ``S3_ENDPOINT_URL``, ``S3_ACCESS_KEY``, ``S3_SECRET_KEY``,
``S3_DEFAULT_BUCKET`` in ``Config`` (or the environment) instead.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path
from typing import Any

import httpx

from podium.blobs import BlobStore, S3Settings
from podium.engine import ActionFactory, Blueprint, Config, OrchestratorEngine
from podium.engine.storage import SQLiteStorage

report = Blueprint("plate_report")


@report.handler(is_start=True)
async def start(task_files: Any, initial_data: dict[str, Any], actions: ActionFactory) -> None:
    plate = await task_files.read_json(initial_data["input"])  # streamed down, size and ETag checked
    summary = {"wells": len(plate["wells"]), "max": max(plate["wells"])}
    await task_files.write_json("report.json", summary)  # streamed up under jobs/<job_id>/
    actions.go_to("done")


@report.handler(is_end=True)
async def done() -> None: ...


async def main() -> None:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        httpx.put(f"{endpoint}/payloads").raise_for_status()  # a bucket
        s3 = S3Settings(endpoint_url=endpoint, access_key="demo", secret_key="demo", bucket="payloads")
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "plate.json").write_text('{"wells": [0.12, 0.87, 0.45, 0.33]}')
            blobs = BlobStore(s3)
            await blobs.upload_file(folder / "plate.json", "inputs/plate.json")
            config = Config(
                S3_ENDPOINT_URL=endpoint,
                S3_ACCESS_KEY="demo",
                S3_SECRET_KEY="demo",
                S3_DEFAULT_BUCKET="payloads",
                TASK_FILES_DIR=str(folder / "task-files"),
            )
            engine = OrchestratorEngine(SQLiteStorage(folder / "podium.db"), config, serve_http=False)
            engine.register_blueprint(report)
            async with engine:
                job_id = await engine.create_job("plate_report", {"input": "s3://payloads/inputs/plate.json"})
                job = await engine.wait_for_job(job_id, timeout_s=30)
                print(f"job {job_id}: {job.status}")
                for entry in await engine.job_history(job_id):
                    if entry.event == "s3_operation":
                        d = entry.data
                        print(f"  {d['operation']:<8} {d['s3_uri']}  {d['size']} bytes  etag {d['etag']}")
                report_key = f"jobs/{job_id}/report.json"
                print(f"report on S3 while the job was running: {report_key}")
            left = await blobs.list(f"jobs/{job_id}/")
            print(f"after the job: {len(left)} object(s) left under jobs/{job_id}/ (cleaned up)")
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
