"""Clients for podium's job API: :class:`AsyncJobClient` and its blocking twin :class:`JobClient`.

::

    async with AsyncJobClient("http://127.0.0.1:8080", token="secret") as jobs:
        job_id = await jobs.submit("transcode", {"path": "in.mp4"})
        job = await jobs.wait(job_id, timeout_s=60)
        print(job.status, job.result)

Both speak the same routes (Avtomatika's client API), send ``X-Client-Token``, and turn error responses
into :class:`JobClientError` subclasses carrying the server's message. :meth:`AsyncJobClient.wait` is a
server-side long poll (``GET /api/v1/jobs/{id}/wait``), not a tight loop of status requests.
"""

from __future__ import annotations

import builtins
import importlib.util
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx

from podium.errors import PodiumError
from podium.wire.jobs import TERMINAL_STATUSES, CreateJobResponse, HistoryItem, JobList, JobView, WorkerView
from podium.wire.rxon import AUTH_HEADER_CLIENT

# httpcore imports ``sniffio`` on every request; when it is not installed, that failed import scans
# sys.path each time (~0.2 ms a request). Record the absence once, the way a failed import would be.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

__all__ = [
    "AsyncJobClient",
    "JobClient",
    "JobClientError",
    "JobNotFoundError",
    "JobWaitTimeout",
    "QuotaExceededError",
]


class JobClientError(PodiumError):
    """The server answered with an error; ``status_code`` and ``body`` say which."""

    def __init__(self, status_code: int, body: Any) -> None:
        self.status_code, self.body = status_code, body
        message = body.get("error") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status_code}: {message}")


class JobNotFoundError(JobClientError):
    """No such job (404)."""


class QuotaExceededError(JobClientError):
    """The client's plan quota is used up (429)."""


class JobWaitTimeout(PodiumError, TimeoutError):
    """The job did not end within the timeout; ``job`` is its last known view."""

    def __init__(self, job: JobView, timeout_s: float) -> None:
        self.job = job
        super().__init__(f"job {job.id} still {job.status} after {timeout_s} s")


@dataclass(frozen=True, slots=True)
class _Req:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None


def _raise_for(response: httpx.Response) -> Any:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if response.status_code < 400:
        return body
    if response.status_code == 404:
        raise JobNotFoundError(response.status_code, body)
    if response.status_code == 429:
        raise QuotaExceededError(response.status_code, body)
    raise JobClientError(response.status_code, body)


class _Requests:
    def __init__(self, api_version: str, api_prefix: str) -> None:
        self.api_version = api_version
        self.api = f"/{api_prefix.strip('/')}" if api_prefix.strip("/") else ""

    def _v1(self, path: str) -> str:
        return f"{self.api}/v1{path}"

    def submit(
        self,
        endpoint: str,
        initial_data: dict[str, Any] | None,
        webhook_url: str | None,
        dispatch_timeout_s: float | None,
        result_timeout_s: float | None,
        api_version: str | None,
    ) -> _Req:
        version = self.api_version if api_version is None else api_version
        version_part = f"/{version}" if version else ""
        endpoint = endpoint.strip("/")
        if not endpoint.startswith("jobs/"):
            endpoint = f"jobs/{endpoint}"
        body: dict[str, Any] = {"initial_data": initial_data or {}}
        if webhook_url is not None:
            body["webhook_url"] = webhook_url
        if dispatch_timeout_s is not None:
            body["dispatch_timeout"] = dispatch_timeout_s
        if result_timeout_s is not None:
            body["result_timeout"] = result_timeout_s
        return _Req("POST", f"{self.api}{version_part}/{endpoint}", json=body)

    def get(self, job_id: str) -> _Req:
        return _Req("GET", self._v1(f"/jobs/{job_id}"))

    def wait(self, job_id: str, timeout_s: float) -> _Req:
        return _Req("GET", self._v1(f"/jobs/{job_id}/wait"), params={"timeout": f"{max(0.0, timeout_s):.3f}"})

    def cancel(self, job_id: str) -> _Req:
        return _Req("POST", self._v1(f"/jobs/{job_id}/cancel"))

    def approve(self, job_id: str, decision: str, data: dict[str, Any] | None) -> _Req:
        return _Req(
            "POST", self._v1(f"/jobs/{job_id}/approval"), json={"decision": decision, "data": data or {}}
        )

    def history(self, job_id: str) -> _Req:
        return _Req("GET", self._v1(f"/jobs/{job_id}/history"))

    def list(self, status: str | None, blueprint: str | None, limit: int, after: str | None) -> _Req:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        if blueprint:
            params["blueprint"] = blueprint
        if after:
            params["after"] = after
        return _Req("GET", self._v1("/jobs"), params=params)

    def blueprint_graph(self, name: str) -> _Req:
        return _Req("GET", self._v1(f"/blueprints/{name}/graph"))

    def workers(self) -> _Req:
        return _Req("GET", self._v1("/workers"))


def _headers(token: str | None) -> dict[str, str]:
    return {AUTH_HEADER_CLIENT: token} if token else {}


class AsyncJobClient:
    """Async client of the job API. Use ``async with`` or call :meth:`aclose`."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_version: str = "v1",
        api_prefix: str = "api",
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._r = _Requests(api_version, api_prefix)
        self.timeout_s = timeout_s
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=_headers(token), timeout=timeout_s, transport=transport
        )

    async def __aenter__(self) -> AsyncJobClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, req: _Req, *, timeout_s: float | None = None) -> Any:
        response = await self._http.request(
            req.method, req.path, params=req.params, json=req.json, timeout=timeout_s or self.timeout_s
        )
        return _raise_for(response)

    async def submit(
        self,
        endpoint: str,
        initial_data: dict[str, Any] | None = None,
        *,
        webhook_url: str | None = None,
        dispatch_timeout_s: float | None = None,
        result_timeout_s: float | None = None,
        api_version: str | None = None,
    ) -> str:
        """Create a job on a blueprint's endpoint; return its id."""
        req = self._r.submit(
            endpoint, initial_data, webhook_url, dispatch_timeout_s, result_timeout_s, api_version
        )
        return CreateJobResponse.model_validate(await self._do(req)).job_id

    async def get(self, job_id: str) -> JobView:
        return JobView.model_validate(await self._do(self._r.get(job_id)))

    async def wait(self, job_id: str, *, timeout_s: float = 60.0) -> JobView:
        """Wait until the job ends; :class:`JobWaitTimeout` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            step = min(max(remaining, 0.0), 25.0)
            job = JobView.model_validate(await self._do(self._r.wait(job_id, step), timeout_s=step + 10.0))
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline - time.monotonic() <= 0:
                raise JobWaitTimeout(job, timeout_s)

    async def cancel(self, job_id: str) -> None:
        await self._do(self._r.cancel(job_id))

    async def approve(
        self, job_id: str, data: dict[str, Any] | None = None, *, decision: str = "approved"
    ) -> None:
        """Answer a job waiting for a human: ``decision`` names the transition to take."""
        await self._do(self._r.approve(job_id, decision, data))

    async def reject(self, job_id: str, data: dict[str, Any] | None = None) -> None:
        await self._do(self._r.approve(job_id, "rejected", data))

    async def history(self, job_id: str) -> list[HistoryItem]:
        return [HistoryItem.model_validate(h) for h in await self._do(self._r.history(job_id))]

    async def list(
        self,
        *,
        status: str | None = None,
        blueprint: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> JobList:
        return JobList.model_validate(await self._do(self._r.list(status, blueprint, limit, after)))

    async def workers(self) -> builtins.list[WorkerView]:
        return [WorkerView.model_validate(w) for w in await self._do(self._r.workers())]

    async def blueprint_graph(self, name: str) -> str:
        """The blueprint's state machine as Mermaid text."""
        return str(await self._do(self._r.blueprint_graph(name)))


class JobClient:
    """Blocking client of the job API (the same methods as :class:`AsyncJobClient`)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_version: str = "v1",
        api_prefix: str = "api",
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._r = _Requests(api_version, api_prefix)
        self.timeout_s = timeout_s
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=_headers(token), timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> JobClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, req: _Req, *, timeout_s: float | None = None) -> Any:
        response = self._http.request(
            req.method, req.path, params=req.params, json=req.json, timeout=timeout_s or self.timeout_s
        )
        return _raise_for(response)

    def submit(
        self,
        endpoint: str,
        initial_data: dict[str, Any] | None = None,
        *,
        webhook_url: str | None = None,
        dispatch_timeout_s: float | None = None,
        result_timeout_s: float | None = None,
        api_version: str | None = None,
    ) -> str:
        req = self._r.submit(
            endpoint, initial_data, webhook_url, dispatch_timeout_s, result_timeout_s, api_version
        )
        return CreateJobResponse.model_validate(self._do(req)).job_id

    def get(self, job_id: str) -> JobView:
        return JobView.model_validate(self._do(self._r.get(job_id)))

    def wait(self, job_id: str, *, timeout_s: float = 60.0) -> JobView:
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            step = min(max(remaining, 0.0), 25.0)
            job = JobView.model_validate(self._do(self._r.wait(job_id, step), timeout_s=step + 10.0))
            if job.status in TERMINAL_STATUSES:
                return job
            if deadline - time.monotonic() <= 0:
                raise JobWaitTimeout(job, timeout_s)

    def cancel(self, job_id: str) -> None:
        self._do(self._r.cancel(job_id))

    def approve(self, job_id: str, data: dict[str, Any] | None = None, *, decision: str = "approved") -> None:
        self._do(self._r.approve(job_id, decision, data))

    def reject(self, job_id: str, data: dict[str, Any] | None = None) -> None:
        self._do(self._r.approve(job_id, "rejected", data))

    def history(self, job_id: str) -> list[HistoryItem]:
        return [HistoryItem.model_validate(h) for h in self._do(self._r.history(job_id))]

    def list(
        self,
        *,
        status: str | None = None,
        blueprint: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> JobList:
        return JobList.model_validate(self._do(self._r.list(status, blueprint, limit, after)))

    def workers(self) -> builtins.list[WorkerView]:
        return [WorkerView.model_validate(w) for w in self._do(self._r.workers())]

    def blueprint_graph(self, name: str) -> str:
        """The blueprint's state machine as Mermaid text."""
        return str(self._do(self._r.blueprint_graph(name)))
