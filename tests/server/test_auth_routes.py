"""Every route that is not public refuses a missing or a wrong token (walks the app's routes)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from podium.server import ServerSettings, create_app
from tests.server.harness import CLIENT_TOKEN, WORKER_TOKEN, make_engine

PUBLIC = {"/_public/health", "/_public/status", "/_public/metrics", "/_public/docs", "/_public/openapi.json"}


def app_and_routes(tmp_path: Path) -> tuple[object, list[tuple[str, str]]]:
    workers = tmp_path / "workers.toml"
    workers.write_text('[listed-worker]\ntoken = "own-token"\n')
    settings = ServerSettings(
        client_token=CLIENT_TOKEN, global_worker_token=WORKER_TOKEN, workers_config_path=workers
    )
    app = create_app(make_engine(), settings, manage_engine=False)
    # Every route is in the OpenAPI schema except the docs page (public); walk the schema.
    routes = []
    for path, operations in app.openapi()["paths"].items():  # type: ignore[attr-defined]
        if path in PUBLIC:
            continue
        concrete = re.sub(r"\{([^}:]+)(:path)?\}", lambda m: "w1" if m.group(1) == "worker_id" else "x", path)
        for method in operations:
            routes.append((method.upper(), concrete))
    return app, routes


def test_the_walk_covers_every_kind_of_route(tmp_path: Path) -> None:
    _, routes = app_and_routes(tmp_path)
    paths = {p for _, p in routes}
    assert "/_worker/workers/register" in paths and "/_worker/tasks/result" in paths
    assert "/api/v1/jobs/transcode" in paths and "/api/v1/jobs/x/cancel" in paths
    assert "/api/v1/admin/reload-workers" in paths and "/_public/webhooks/approval/x" in paths
    assert len(routes) >= 24


@pytest.mark.parametrize("credential", ["missing", "wrong"])
async def test_every_non_public_route_refuses_a_missing_or_wrong_token(
    tmp_path: Path, credential: str
) -> None:
    app, routes = app_and_routes(tmp_path)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    failures = []
    async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
        for method, path in routes:
            headers = {"X-Worker-ID": "w1"}
            if credential == "wrong":
                headers |= {"X-Client-Token": "wrong", "X-Worker-Token": "wrong"}
            r = await http.request(method, path, headers=headers, json={"worker_id": "w1"})
            if r.status_code != 401:
                failures.append((method, path, r.status_code, r.text[:100]))
    assert not failures


async def test_tokens_of_the_other_kind_do_not_open_routes(tmp_path: Path) -> None:
    app, routes = app_and_routes(tmp_path)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
        for method, path in routes:
            swapped = {"X-Client-Token": WORKER_TOKEN, "X-Worker-Token": CLIENT_TOKEN, "X-Worker-ID": "w1"}
            r = await http.request(method, path, headers=swapped, json={"worker_id": "w1"})
            assert r.status_code == 401, (method, path, r.status_code)


async def test_a_listed_worker_cannot_use_the_global_token(tmp_path: Path) -> None:
    app, _ = app_and_routes(tmp_path)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
        body = {"worker_id": "listed-worker", "supported_skills": [{"name": "s"}]}
        headers = {"X-Worker-ID": "listed-worker"}
        r = await http.post(
            "/_worker/workers/register", json=body, headers=headers | {"X-Worker-Token": WORKER_TOKEN}
        )
        assert r.status_code == 401
        r = await http.post(
            "/_worker/workers/register", json=body, headers=headers | {"X-Worker-Token": "own-token"}
        )
        assert r.status_code != 401
        # a worker may not speak for another one
        r = await http.post(
            "/_worker/workers/register",
            json={"worker_id": "someone-else"},
            headers=headers | {"X-Worker-Token": "own-token"},
        )
        assert r.status_code == 403


async def test_public_routes_need_no_token(tmp_path: Path) -> None:
    app, _ = app_and_routes(tmp_path)
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://podium") as http:
        for path in sorted(PUBLIC):
            assert (await http.get(path)).status_code == 200, path
        docs = (await http.get("/_public/openapi.json")).json()
        assert "/api/v1/jobs/transcode" in docs["paths"]
        assert "POST /api/v1/jobs/transcode" in docs["info"]["description"]
        metrics = (await http.get("/_public/metrics")).text
        assert "podium_http_requests_total" in metrics
