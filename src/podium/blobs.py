"""S3 payload offloading: files of a job on S3-compatible storage, streamed, checked end to end.

:class:`BlobStore` talks to one bucket through obstore (extra ``s3``; imported lazily). :class:`TaskFiles` is
what a handler or a worker skill receives as ``task_files`` (Avtomatika's surface): a job's files under the
prefix ``jobs/<job_id>/`` and a local folder ``<TASK_FILES_DIR>/<job_id>``.

- **Streaming, constant memory.** Uploads read the file in parts of ``chunk_size`` bytes (S3 multipart above
  one part); downloads write the body to disk as it arrives. Memory stays at about
  ``chunk_size x max_concurrency`` whatever the file's size.
- **Checked end to end.** An upload computes the object's ETag itself as it reads (the MD5 of a single part,
  or S3's multipart form ``md5(part md5s)-N``) and compares it with the one the server answers, and the size
  with ``HEAD``; a download counts the bytes written against the object's size and, when the caller says what
  it expects (``verify_meta={"size", "etag"}``, as recorded at upload), checks both. A mismatch raises
  :class:`BlobIntegrityError` and leaves no partial file behind.
- **Audit trail.** Every transfer calls ``on_event(operation, uri, local_path, metadata)`` (the engine
  appends it to the job's history).
- **Cleanup.** :meth:`TaskFiles.cleanup` deletes the job's objects and its local folder (the engine calls it
  when a job ends, unless ``S3_AUTO_CLEANUP`` is off).

obstore's blocking calls run on worker threads (``asyncio.to_thread``): its asyncio entry points can abort
the interpreter at exit when a Tokio thread outlives finalisation (seen here about one exit in two), its
blocking ones did not in the same runs.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from podium.errors import ConfigError, MissingDependencyError, PodiumError

__all__ = [
    "BlobIntegrityError",
    "BlobStore",
    "ObjectMeta",
    "S3Settings",
    "TaskFiles",
    "multipart_etag",
    "parse_uri",
]

DEFAULT_CHUNK_SIZE = 8 << 20
MIN_CHUNK_SIZE = 5 << 20  # S3's smallest multipart part


class BlobIntegrityError(PodiumError):
    """A transfer's size or ETag is not what the other end says (nothing partial is kept)."""


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """What S3 says of an object: its key, size in bytes and ETag (without quotes)."""

    key: str
    size: int
    etag: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "etag": self.etag}


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the bucket is and how to reach it (Avtomatika's ``S3_*`` settings)."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str = "avtomatika-payloads"
    region: str = "us-east-1"
    max_concurrency: int = 4
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"S3_ENDPOINT_URL {self.endpoint_url!r}: expected an http(s):// URL")
        if not self.bucket:
            raise ConfigError("S3_DEFAULT_BUCKET: empty")
        if not 1 <= self.max_concurrency <= 256:
            raise ConfigError(f"S3_MAX_CONCURRENCY {self.max_concurrency}: between 1 and 256")
        if self.chunk_size < MIN_CHUNK_SIZE:
            raise ConfigError(f"chunk_size {self.chunk_size}: S3 parts are at least {MIN_CHUNK_SIZE} bytes")

    @classmethod
    def from_config(cls, config: Any) -> S3Settings | None:
        """From an object with Avtomatika's ``S3_*`` fields (``podium.engine.Config``, the worker's
        settings); ``None`` when S3 is not configured (no endpoint, key and secret)."""
        endpoint = getattr(config, "S3_ENDPOINT_URL", "") or ""
        key = getattr(config, "S3_ACCESS_KEY", "") or ""
        secret = getattr(config, "S3_SECRET_KEY", "") or ""
        if not (endpoint and key and secret):
            return None
        return cls(
            endpoint_url=endpoint,
            access_key=key,
            secret_key=secret,
            bucket=getattr(config, "S3_DEFAULT_BUCKET", "") or "avtomatika-payloads",
            region=getattr(config, "S3_REGION", "") or "us-east-1",
            max_concurrency=min(int(getattr(config, "S3_MAX_CONCURRENCY", 4) or 4), 256),
        )


def multipart_etag(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object uploaded in these parts: one part's MD5, or ``md5(md5s)-N``."""
    if len(part_md5s) == 1:
        return part_md5s[0].hex()
    return f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{len(part_md5s)}"


def parse_uri(name_or_uri: str, bucket: str, prefix: str = "") -> tuple[str, str, bool]:
    """``(bucket, key, is_folder)`` of ``s3://bucket/key`` or of a name under ``prefix`` (a trailing ``/``
    names a folder). Refuses keys that climb out of the prefix (``..``)."""
    if name_or_uri.startswith("s3://"):
        rest = name_or_uri[5:]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"{name_or_uri!r}: no bucket")
    else:
        key = prefix + name_or_uri.lstrip("/")
    if any(part == ".." for part in key.split("/")):
        raise ValueError(f"{name_or_uri!r}: '..' is not allowed in a key")
    return bucket, key, key.endswith("/")


def _strip(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


class BlobStore:
    """One bucket on S3-compatible storage. See the module docstring."""

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self._store: Any = None
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    def _s3(self) -> Any:
        if self._store is None:
            try:
                from obstore.store import S3Store
            except ImportError as exc:
                raise MissingDependencyError("obstore", "s3") from exc
            s = self.settings
            self._store = S3Store(
                s.bucket,
                endpoint=s.endpoint_url,
                aws_access_key_id=s.access_key,
                aws_secret_access_key=s.secret_key,
                region=s.region,
                client_options={"allow_http": s.endpoint_url.startswith("http://")},
            )
        return self._store

    def uri(self, key: str) -> str:
        return f"s3://{self.settings.bucket}/{key}"

    async def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._slots:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def upload_file(self, path: Path, key: str) -> ObjectMeta:
        """Stream a local file to ``key``; check the ETag and size the server answers."""
        import obstore

        chunk = self.settings.chunk_size
        md5s: list[bytes] = []
        size = (await asyncio.to_thread(path.stat)).st_size

        def parts() -> Iterator[bytes]:
            with path.open("rb") as f:
                while block := f.read(chunk):
                    md5s.append(hashlib.md5(block).digest())
                    yield block

        def put() -> dict[str, Any]:
            if size < chunk:  # one part: a plain PUT, whose ETag is the body's MD5
                body = path.read_bytes()
                md5s.append(hashlib.md5(body).digest())
                return dict(obstore.put(self._s3(), key, body))
            return dict(obstore.put(self._s3(), key, parts(), chunk_size=chunk, max_concurrency=2))

        answer = await self._run(put)
        expected = multipart_etag(md5s) if md5s else hashlib.md5(b"").hexdigest()
        meta = await self.head(key)
        etag = _strip(answer.get("e_tag"))
        if meta is None or meta.size != size or etag != expected or meta.etag != expected:
            raise BlobIntegrityError(
                f"upload of {path} to {self.uri(key)}: sent {size} bytes with ETag {expected}, the store has "
                f"{meta.size if meta else 'nothing'} bytes with ETag {meta.etag if meta else etag}"
            )
        return meta

    async def upload_bytes(self, data: bytes, key: str) -> ObjectMeta:
        """Put a small object (JSON, text); check its ETag (its MD5)."""
        import obstore

        answer = dict(await self._run(lambda: obstore.put(self._s3(), key, data)))
        expected = hashlib.md5(data).hexdigest()
        if _strip(answer.get("e_tag")) != expected:
            raise BlobIntegrityError(
                f"upload to {self.uri(key)}: ETag {answer.get('e_tag')}, sent {expected}"
            )
        return ObjectMeta(key, len(data), expected)

    async def download_file(
        self, key: str, path: Path, *, expect: dict[str, Any] | None = None
    ) -> ObjectMeta:
        """Stream ``key`` into ``path`` (written beside it, then renamed: no partial file is ever left);
        check the byte count against the object's size, and ``expect``'s size/etag when given."""
        import obstore

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")

        def get() -> tuple[int, ObjectMeta]:
            result = obstore.get(self._s3(), key)
            meta = result.meta
            written = 0
            with partial.open("wb") as f:
                for block in result.stream(min_chunk_size=1 << 20):
                    f.write(block)
                    written += len(block)
            return written, ObjectMeta(key, int(meta["size"]), _strip(meta.get("e_tag")))

        try:
            answer: tuple[int, ObjectMeta] = await self._run(get)
            written, meta = answer
            problems = []
            if written != meta.size:
                problems.append(f"received {written} of {meta.size} bytes")
            if expect and expect.get("size") is not None and int(expect["size"]) != meta.size:
                problems.append(f"size {meta.size}, expected {expect['size']}")
            if expect and expect.get("etag") and _strip(str(expect["etag"])) != meta.etag:
                problems.append(f"ETag {meta.etag}, expected {expect['etag']}")
            if problems:
                raise BlobIntegrityError(f"download of {self.uri(key)}: " + "; ".join(problems))
            partial.replace(path)
            return meta
        finally:
            partial.unlink(missing_ok=True)

    async def stream(
        self, key: str, *, expected_size: int | None = None, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """The object's bytes as they arrive (blocks of about ``chunk_size``), each read on a worker thread;
        raises :class:`BlobIntegrityError` at the end when fewer or more bytes came than the object's size
        (or ``expected_size``)."""
        import obstore

        result = await self._run(obstore.get, self._s3(), key)
        size = int(result.meta["size"]) if expected_size is None else expected_size
        blocks = iter(result.stream(min_chunk_size=chunk_size))
        received = 0
        while (block := await asyncio.to_thread(next, blocks, None)) is not None:
            received += len(block)
            yield bytes(block)
        if received != size:
            raise BlobIntegrityError(f"read of {self.uri(key)}: received {received} of {size} bytes")

    async def head(self, key: str) -> ObjectMeta | None:
        """The object's size and ETag, or ``None`` when there is no such object."""
        import obstore
        from obstore.exceptions import NotFoundError

        def head() -> ObjectMeta | None:
            try:
                meta = obstore.head(self._s3(), key)
            except (NotFoundError, FileNotFoundError):  # obstore raises one or the other by version
                return None
            return ObjectMeta(key, int(meta["size"]), _strip(meta.get("e_tag")))

        result: ObjectMeta | None = await self._run(head)
        return result

    async def list(self, prefix: str) -> list[ObjectMeta]:
        """Every object under ``prefix``."""
        import obstore

        def listing() -> builtins.list[ObjectMeta]:
            return [
                ObjectMeta(str(m["path"]), int(m["size"]), _strip(m.get("e_tag")))
                for batch in obstore.list(self._s3(), prefix=prefix)
                for m in batch
            ]

        found: builtins.list[ObjectMeta] = await self._run(listing)
        return found

    async def delete(self, keys: builtins.list[str]) -> None:
        """Delete these objects (missing ones are fine)."""
        import obstore

        if keys:
            await self._run(obstore.delete, self._s3(), keys)

    def presigned_url(self, key: str, method: str = "GET", expires_in_s: int = 3600) -> str:
        """A URL that grants ``method`` on ``key`` for ``expires_in_s`` seconds without credentials."""
        import obstore

        if not 1 <= expires_in_s <= 7 * 24 * 3600:
            raise ValueError("expires_in_s: between 1 s and 7 days")
        verb: Any = method.upper()
        return str(obstore.sign(self._s3(), verb, key, timedelta(seconds=expires_in_s)))


OnEvent = Callable[[str, str, str, dict[str, Any]], Awaitable[None]]


class TaskFiles:
    """A job's files: Avtomatika's ``task_files`` (see the module docstring). Names are relative to the
    job's prefix ``jobs/<job_id>/``; ``s3://bucket/key`` URIs name any object."""

    def __init__(
        self,
        blobs: BlobStore,
        job_id: str,
        base_local_dir: str | Path,
        *,
        on_event: OnEvent | None = None,
    ) -> None:
        if not job_id or "/" in job_id or job_id in (".", ".."):
            raise ValueError(f"job_id {job_id!r}: not usable as a folder name")
        self.blobs = blobs
        self.job_id = job_id
        self.prefix = f"jobs/{job_id}/"
        self.local_dir = Path(base_local_dir) / job_id
        self._on_event = on_event

    def path(self, filename: str) -> Path:
        """The local path of ``filename`` inside the job's folder (refuses names that climb out of it)."""
        self.local_dir.mkdir(parents=True, exist_ok=True)
        clean = filename.rsplit("/", 1)[-1] if "://" in filename else filename.lstrip("/")
        resolved = (self.local_dir / clean).resolve()
        if not resolved.is_relative_to(self.local_dir.resolve()):
            raise PermissionError(f"path traversal attempt: {filename!r} leaves the job's folder")
        return resolved

    def generate_presigned_url(self, filename: str, method: str = "GET", expires_in: int = 3600) -> str:
        """A temporary link to a file of this job."""
        return self.blobs.presigned_url(self.prefix + filename.lstrip("/"), method, expires_in)

    async def download(
        self, name_or_uri: str, local_name: str | None = None, verify_meta: dict[str, Any] | None = None
    ) -> Path:
        """Download a file, or a folder (a name ending in ``/``) recursively; return the local path."""
        bucket, key, is_dir = parse_uri(name_or_uri, self.blobs.settings.bucket, self.prefix)
        if bucket != self.blobs.settings.bucket:
            raise ValueError(
                f"{name_or_uri!r}: bucket {bucket!r} is not the configured {self.blobs.settings.bucket!r}"
            )
        if local_name:
            target = self.path(local_name)
        else:
            relative = key[len(self.prefix) :] if key.startswith(self.prefix) else key.rsplit("/", 1)[-1]
            target = self.path(relative.rstrip("/")) if relative.rstrip("/") else self.local_dir
        if is_dir:
            objects = [m for m in await self.blobs.list(key) if m.key != key]
            await asyncio.gather(
                *(self.blobs.download_file(m.key, target / m.key[len(key) :]) for m in objects)
            )
            await self._event("download_dir", self.blobs.uri(key), target, {"file_count": len(objects)})
            return target
        meta = await self.blobs.download_file(key, target, expect=verify_meta)
        await self._event("download", self.blobs.uri(key), target, meta.as_dict())
        return target

    async def upload(self, local_name: str, remote_name: str | None = None) -> str:
        """Upload a file, or a folder recursively; return its ``s3://`` URI."""
        local = self.path(local_name)
        remote = (remote_name or local_name).lstrip("/")
        if local.is_dir():
            base = self.prefix + remote.rstrip("/") + "/"
            files = [p for p in sorted(local.rglob("*")) if p.is_file()]
            metas = await asyncio.gather(
                *(self.blobs.upload_file(p, base + p.relative_to(local).as_posix()) for p in files)
            )
            uri = self.blobs.uri(base)
            await self._event(
                "upload_dir", uri, local, {"file_count": len(files), "size": sum(m.size for m in metas)}
            )
            return uri
        if not local.exists():
            raise FileNotFoundError(f"local file or folder not found: {local}")
        key = self.prefix + remote
        meta = await self.blobs.upload_file(local, key)
        await self._event("upload", self.blobs.uri(key), local, meta.as_dict())
        return self.blobs.uri(key)

    async def read_text(self, name_or_uri: str) -> str:
        return (await self._local_copy(name_or_uri)).read_text(encoding="utf-8")

    async def read_json(self, name_or_uri: str) -> Any:
        return orjson.loads((await self._local_copy(name_or_uri)).read_bytes())

    async def write_json(self, filename: str, data: Any, upload: bool = True) -> str:
        local = self.path(filename)
        local.write_bytes(orjson.dumps(data))
        return await self.upload(filename) if upload else f"file://{local}"

    async def write_text(self, filename: str, text: str, upload: bool = True) -> Path:
        local = self.path(filename)
        local.write_text(text, encoding="utf-8")
        if upload:
            await self.upload(filename)
        return local

    async def cleanup(self) -> None:
        """Delete the job's objects and its local folder."""
        objects = await self.blobs.list(self.prefix)
        await self.blobs.delete([m.key for m in objects])
        if self.local_dir.exists():
            await asyncio.to_thread(shutil.rmtree, self.local_dir, True)

    async def _local_copy(self, name_or_uri: str) -> Path:
        _, key, _ = parse_uri(name_or_uri, self.blobs.settings.bucket, self.prefix)
        local = self.path(key.rsplit("/", 1)[-1])
        if not local.exists():
            await self.download(name_or_uri, local_name=local.name)
        return local

    async def _event(self, operation: str, uri: str, local: Path, metadata: dict[str, Any]) -> None:
        if self._on_event is not None:
            await self._on_event(operation, uri, os.fspath(local), metadata)
