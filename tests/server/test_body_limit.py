"""No route reads a body above MAX_BODY_BYTES (worker registration, heartbeat, results and events too, not
only job submission): 413 with an ErrorBody, before the body is read. Bad bodies on the worker routes get a
4xx naming what is wrong, never a 500. Real server on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from podium.wire import rxon
from podium.wire.jobs import ErrorBody
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, running_stack

LIMIT = 4096
WORKER = {"X-Worker-Token": WORKER_TOKEN, "X-Worker-ID": "bw"}
CLIENT = {"X-Client-Token": CLIENT_TOKEN}
HEARTBEAT = rxon.ENDPOINT_HEARTBEAT.format(worker_id="bw")

# (method, path, headers) of every route that takes a body
BODY_ROUTES = [
    ("POST", rxon.ENDPOINT_REGISTER, WORKER),
    ("PATCH", HEARTBEAT, WORKER),
    ("POST", rxon.ENDPOINT_TASK_RESULT, WORKER),
    ("POST", rxon.ENDPOINT_TASK_RESULTS, WORKER),
    ("POST", rxon.ENDPOINT_EVENTS, WORKER),
    ("POST", "/api/v1/jobs/transcode", CLIENT),  # a blueprint's own route (the fast one)
    ("POST", "/api/v1/jobs/some/other", CLIENT),  # the generic submission route
    ("POST", "/api/v1/jobs/j1/approval", CLIENT),
    ("POST", "/api/v1/jobs/j1/approve", CLIENT),
    ("POST", "/_public/webhooks/approval/j1", {}),
    ("POST", "/api/v1/admin/reload-workers", CLIENT),
]


def big_json(size: int) -> bytes:
    return b'{"pad": "' + b"x" * size + b'"}'


def check_too_large(r: httpx.Response) -> None:
    assert r.status_code == 413, (r.request.url, r.status_code, r.text)
    body = ErrorBody.model_validate(r.json())
    assert str(LIMIT) in body.error and "MAX_BODY_BYTES" in body.error


@pytest.mark.parametrize(("method", "path", "headers"), BODY_ROUTES)
async def test_a_body_over_the_limit_is_refused_413_on_every_route(
    method: str, path: str, headers: dict[str, str]
) -> None:
    async with running_stack(max_body_bytes=LIMIT) as stack, httpx.AsyncClient(base_url=stack.url) as http:
        # declared length over the limit
        check_too_large(await http.request(method, path, content=big_json(LIMIT), headers=headers))

        # chunked (no Content-Length): read up to the limit, then refused
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"x" * 1024

        check_too_large(await http.request(method, path, content=chunks(), headers=headers))


async def test_the_413_comes_before_the_body_is_read() -> None:
    async with running_stack(max_body_bytes=LIMIT) as stack:
        host, port = stack.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            # 100 MB announced, not one byte of it sent: the answer cannot have waited for the body
            writer.write(
                f"POST {rxon.ENDPOINT_REGISTER} HTTP/1.1\r\nHost: x\r\nX-Worker-Token: {WORKER_TOKEN}\r\n"
                f"X-Worker-ID: bw\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n".encode()
            )
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 10)
            assert status.startswith(b"HTTP/1.1 413")
        finally:
            writer.close()


async def test_within_the_limit_chunked_bodies_still_work() -> None:
    async with running_stack(max_body_bytes=LIMIT) as stack, httpx.AsyncClient(base_url=stack.url) as http:

        async def body() -> AsyncIterator[bytes]:
            yield b'{"initial_data": '
            yield b'{"path": "/a"}}'

        r = await http.post("/api/v1/jobs/transcode", content=body(), headers=CLIENT)
        assert r.status_code == 202, r.text
        register = {"worker_id": "bw", "supported_skills": [{"name": "video_transcoding"}]}
        assert (await http.post(rxon.ENDPOINT_REGISTER, json=register, headers=WORKER)).status_code == 200


async def test_the_openapi_schema_documents_the_413() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        spec = (await http.get("/_public/openapi.json")).json()
        for method, path, _ in BODY_ROUTES:
            templated = {
                HEARTBEAT: rxon.ENDPOINT_HEARTBEAT,
                "/api/v1/jobs/some/other": "/api/{version}/jobs/{endpoint}",
                "/api/v1/jobs/j1/approval": "/api/v1/jobs/{job_id}/approval",
                "/api/v1/jobs/j1/approve": "/api/v1/jobs/{job_id}/approve",
                "/_public/webhooks/approval/j1": "/_public/webhooks/approval/{job_id}",
            }.get(path, path)
            response = spec["paths"][templated][method.lower()]["responses"]["413"]
            assert response["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


BAD_WORKER_BODIES: list[tuple[str, str, Any]] = [
    ("POST", rxon.ENDPOINT_REGISTER, b"{not json"),
    ("POST", rxon.ENDPOINT_REGISTER, [1, 2]),
    ("POST", rxon.ENDPOINT_REGISTER, {"worker_id": "bw", "supported_skills": "noop"}),
    ("POST", rxon.ENDPOINT_REGISTER, {"worker_id": "bw", "supported_skills": [{"name": 5}]}),
    ("POST", rxon.ENDPOINT_REGISTER, {"worker_id": "bw", "capabilities": {"cost_per_skill": {"a": "x"}}}),
    ("PATCH", HEARTBEAT, b"[]"),
    ("PATCH", HEARTBEAT, {"status": 7}),
    ("PATCH", HEARTBEAT, {"current_tasks": "t1"}),
    ("POST", rxon.ENDPOINT_TASK_RESULT, b"\xff\xfe"),
    ("POST", rxon.ENDPOINT_TASK_RESULT, {"task_id": "t1"}),
    ("POST", rxon.ENDPOINT_TASK_RESULT, {"job_id": "j", "task_id": "t", "status": "success", "data": [1]}),
    ("POST", rxon.ENDPOINT_TASK_RESULT, {"job_id": "j", "task_id": "t", "status": "failure", "error": "x"}),
    ("POST", rxon.ENDPOINT_TASK_RESULTS, {"results": "none"}),
    ("POST", rxon.ENDPOINT_TASK_RESULTS, {"results": [{"task_id": 1}]}),
    ("POST", rxon.ENDPOINT_EVENTS, {"event_type": "progress"}),
    ("POST", rxon.ENDPOINT_EVENTS, 3),
]


async def test_bad_bodies_on_the_worker_routes_are_4xx_never_500() -> None:
    async with running_stack() as stack, httpx.AsyncClient(base_url=stack.url) as http:
        ok = {"worker_id": "bw", "supported_skills": [{"name": "video_transcoding"}]}
        assert (await http.post(rxon.ENDPOINT_REGISTER, json=ok, headers=WORKER)).status_code == 200
        for method, path, body in BAD_WORKER_BODIES:
            kwargs: dict[str, Any] = {"content": body} if isinstance(body, bytes) else {"json": body}
            r = await http.request(method, path, headers=WORKER, **kwargs)
            assert 400 <= r.status_code < 500, (method, path, body, r.status_code, r.text)
            error = ErrorBody.model_validate(r.json())
            if r.status_code == 422:
                assert error.field, (path, body, r.text)  # a 422 names the field
