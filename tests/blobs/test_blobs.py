"""S3 payload offloading against a real S3-compatible server (moto's server mode on loopback): streaming
transfers checked end to end (size, ETag), folders, JSON, presigned links, the audit trail, cleanup, path
traversal refused, and a file larger than a memory cap moved with the process's peak RSS under that cap."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.blobs import BlobIntegrityError, BlobStore, S3Settings, TaskFiles, multipart_etag, parse_uri

ROOT = Path(__file__).resolve().parents[2]
MB = 1 << 20


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, MB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_multipart_etag_and_uris() -> None:
    one = hashlib.md5(b"a").digest()
    assert multipart_etag([one]) == one.hex()
    assert multipart_etag([one, one]) == hashlib.md5(one + one).hexdigest() + "-2"
    assert parse_uri("s3://b/jobs/x/y.csv", "default") == ("b", "jobs/x/y.csv", False)
    assert parse_uri("out/", "default", "jobs/j/") == ("default", "jobs/j/out/", True)
    with pytest.raises(ValueError, match=r"\.\."):
        parse_uri("../other-job/secret", "default", "jobs/j/")


async def test_streamed_transfers_are_checked_end_to_end(s3: S3Settings, tmp_path: Path) -> None:
    blobs = BlobStore(S3Settings(s3.endpoint_url, s3.access_key, s3.secret_key, s3.bucket, chunk_size=5 * MB))
    small, big = tmp_path / "small.txt", tmp_path / "big.bin"
    small.write_text("hello plate")
    digest = write_random(big, 12 * MB + 7)  # three parts of 5 MB: a multipart upload
    small_meta = await blobs.upload_file(small, "jobs/j/small.txt")
    assert small_meta.size == 11 and small_meta.etag == hashlib.md5(b"hello plate").hexdigest()
    big_meta = await blobs.upload_file(big, "jobs/j/big.bin")
    assert big_meta.size == 12 * MB + 7 and big_meta.etag is not None and big_meta.etag.endswith("-3")
    assert sorted(m.key for m in await blobs.list("jobs/j/")) == ["jobs/j/big.bin", "jobs/j/small.txt"]
    back = tmp_path / "back" / "big.bin"
    got = await blobs.download_file("jobs/j/big.bin", back, expect=big_meta.as_dict())
    assert got == big_meta and sha256(back) == digest
    # A download whose object is not what was recorded is refused, and leaves nothing behind
    wrong = tmp_path / "wrong.bin"
    with pytest.raises(BlobIntegrityError, match="ETag"):
        await blobs.download_file("jobs/j/big.bin", wrong, expect={"etag": small_meta.etag})
    assert not wrong.exists() and not list(tmp_path.glob("*.part"))
    with pytest.raises(BlobIntegrityError, match="size"):
        await blobs.download_file("jobs/j/small.txt", wrong, expect={"size": 12})
    assert await blobs.head("jobs/j/nothing") is None
    # A presigned link fetches the object with no credentials
    url = blobs.presigned_url("jobs/j/small.txt", expires_in_s=60)
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).text == "hello plate"
    with pytest.raises(ValueError, match="expires_in_s"):
        blobs.presigned_url("jobs/j/small.txt", expires_in_s=0)


async def test_task_files_surface(s3: S3Settings, tmp_path: Path) -> None:
    events: list[tuple[str, str, dict[str, Any]]] = []

    async def record(operation: str, uri: str, local: str, metadata: dict[str, Any]) -> None:
        events.append((operation, uri, metadata))

    files = TaskFiles(BlobStore(s3), "job1", tmp_path / "work", on_event=record)
    # JSON written and uploaded, then read back from S3 in a fresh local folder
    uri = await files.write_json("results.json", {"wells": 96})
    assert uri == f"s3://{s3.bucket}/jobs/job1/results.json"
    other = TaskFiles(BlobStore(s3), "job1", tmp_path / "elsewhere")
    assert await other.read_json("results.json") == {"wells": 96}
    assert await other.read_json(uri) == {"wells": 96}
    await files.write_text("notes.txt", "sealed at 160 C")
    assert await other.read_text("notes.txt") == "sealed at 160 C"
    # A folder goes up and comes down recursively
    (files.path("plates") / "p1").mkdir(parents=True)
    (files.path("plates") / "p1" / "a.csv").write_text("A1,0.5\n")
    (files.path("plates") / "b.csv").write_text("B1,0.7\n")
    folder = await files.upload("plates")
    assert folder.endswith("/jobs/job1/plates/")
    copied = await other.download("plates/")
    assert (copied / "p1" / "a.csv").read_text() == "A1,0.5\n" and (
        copied / "b.csv"
    ).read_text() == "B1,0.7\n"
    # Every transfer was reported with what it moved
    ops = [e[0] for e in events]
    assert ops == ["upload", "upload", "upload_dir"]
    assert (
        events[0][2]["size"] == len(json.dumps({"wells": 96}, separators=(",", ":"))) and events[0][2]["etag"]
    )
    assert events[2][2]["file_count"] == 2
    # Names cannot leave the job's folder, nor the job's prefix
    with pytest.raises(PermissionError):
        files.path("../../etc/passwd")
    with pytest.raises(ValueError):
        await files.download("../job2/results.json")
    with pytest.raises(FileNotFoundError):
        await files.upload("missing.bin")
    # A presigned link to a job's file
    async with httpx.AsyncClient() as http:
        assert (await http.get(files.generate_presigned_url("notes.txt"))).text == "sealed at 160 C"
    # Cleanup removes the job's objects and its local folder, and only them
    await TaskFiles(BlobStore(s3), "job2", tmp_path / "work").write_json("keep.json", {})
    await files.cleanup()
    assert [m.key for m in await BlobStore(s3).list("jobs/")] == ["jobs/job2/keep.json"]
    assert not files.local_dir.exists()


def test_settings_are_checked() -> None:
    from podium.errors import ConfigError

    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        S3Settings("localhost:9000", "k", "s")
    with pytest.raises(ConfigError, match="5242880"):
        S3Settings("http://x", "k", "s", chunk_size=1024)

    class Cfg:
        S3_ENDPOINT_URL, S3_ACCESS_KEY, S3_SECRET_KEY = "http://s3:9000", "k", "s"
        S3_DEFAULT_BUCKET = "payloads"

    assert S3Settings.from_config(Cfg()) == S3Settings("http://s3:9000", "k", "s", "payloads")
    Cfg.S3_SECRET_KEY = ""
    assert S3Settings.from_config(Cfg()) is None


LARGE = r"""
import asyncio, hashlib, json, os, sys
from pathlib import Path
from podium.blobs import BlobStore, S3Settings

def peak_rss_mb():  # this process's high-water mark (ru_maxrss would carry the forking parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

endpoint, bucket, folder, size = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
source = folder / "large.bin"
digest = hashlib.sha256()
with source.open("wb") as f:
    left = size
    while left:
        block = os.urandom(min(left, 1 << 20))
        digest.update(block); f.write(block); left -= len(block)

baseline = peak_rss_mb()

async def main():
    blobs = BlobStore(S3Settings(endpoint, "test", "test", bucket, chunk_size=5 << 20, max_concurrency=2))
    meta = await blobs.upload_file(source, "jobs/big/large.bin")
    back = folder / "back.bin"
    await blobs.download_file(meta.key, back, expect=meta.as_dict())
    check = hashlib.sha256()
    with back.open("rb") as f:
        while block := f.read(1 << 20):
            check.update(block)
    return meta, check.hexdigest()

meta, back_digest = asyncio.run(main())
print(json.dumps({"size": meta.size, "same": back_digest == digest.hexdigest(), "baseline_rss_mb": baseline,
                  "peak_rss_mb": peak_rss_mb()}))
"""


@pytest.mark.timeout(240)
def test_a_file_larger_than_the_memory_cap_streams(s3: S3Settings, tmp_path: Path) -> None:
    # Given a cap of 64 MB of resident memory for the transferring process, and a 192 MB file
    cap_mb, size = 64, 192 * MB
    result = subprocess.run(
        [sys.executable, "-c", LARGE, s3.endpoint_url, s3.bucket, str(tmp_path), str(size)],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    # Then it went up and came back whole, and the process never held more than the cap
    assert figures["size"] == size and figures["same"] is True
    print(
        f"\n{size // MB} MB file up and down: peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(before the transfer {figures['baseline_rss_mb']:.0f} MB; cap {cap_mb} MB)"
    )
    assert figures["peak_rss_mb"] < cap_mb, figures
