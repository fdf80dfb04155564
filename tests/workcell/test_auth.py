"""Workcell API tokens: every route but the public ones refuses a missing or wrong token (walks the app)."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import httpx
import pytest

from podium.client.workcell import WorkcellClient, WorkcellClientError
from podium.errors import ConfigError
from podium.store import MemoryStore
from podium.workcell import InProcessNode, WorkcellEngine, WorkcellManagerSettings, load_workcell
from podium.workcell.demo import DEMO_DIR
from podium.workcell.server import PUBLIC_PATHS, create_app, serve_workcell

TOKEN = "wc-token-1"


def make_engine(tmp_path: Path, **settings: object) -> WorkcellEngine:
    workcell = load_workcell(DEMO_DIR / "workcell.yaml")
    nodes = {n: InProcessNode(n, {"home": lambda: None}) for n in workcell.nodes}
    workcell.nodes = {n: f"http://podium:node-secret@{n}:2000" for n in workcell.nodes}
    return WorkcellEngine(
        workcell,
        store=MemoryStore(),
        data_dir=tmp_path,
        connectors=nodes,
        settings=WorkcellManagerSettings(data_dir=tmp_path, **settings),  # type: ignore[arg-type]
    )


def routes(app: object) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:  # type: ignore[attr-defined]
        path = getattr(route, "path", "")
        if path in PUBLIC_PATHS:
            continue
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            out.append((method, re.sub(r"\{[^}]+\}", "x", path)))
    return out


def test_the_walk_covers_every_kind_of_route(tmp_path: Path) -> None:
    paths = {p for _, p in routes(create_app(make_engine(tmp_path), api_tokens=[TOKEN]))}
    assert {"/workcell", "/state", "/nodes", "/node", "/admin/x/x", "/workflow", "/workflow/x/retry"} <= paths
    assert {"/datapoint/x", "/datapoint/x/value", "/datapoints", "/resource/x/push", "/location"} <= paths
    assert len(paths) >= 30


def test_no_token_no_app(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a token"):
        create_app(make_engine(tmp_path))


@pytest.mark.parametrize("credential", ["missing", "bearer", "basic", "header", "basic-user-only"])
async def test_every_non_public_route_refuses_a_missing_or_wrong_token(
    tmp_path: Path, credential: str
) -> None:
    app = create_app(make_engine(tmp_path), api_tokens=[TOKEN], manage_engine=False)
    headers = {
        "missing": {},
        "bearer": {"Authorization": "Bearer wrong"},
        "basic": {"Authorization": "Basic " + base64.b64encode(b"podium:wrong").decode()},
        "header": {"X-Client-Token": "wrong"},
        "basic-user-only": {"Authorization": "Basic " + base64.b64encode(f"{TOKEN}x:".encode()).decode()},
    }[credential]
    failures = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://wc") as http:
        for method, path in routes(app):
            r = await http.request(method, path, headers=headers, json={})
            if r.status_code != 401 or "token" not in r.json()["detail"]:
                failures.append((method, path, r.status_code))
    assert not failures


async def test_public_routes_and_the_right_token(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, api_tokens=f"{TOKEN},other")
    assert engine.settings.api_tokens == [] and len(engine.settings.api_token_hashes) == 2
    app = create_app(engine, manage_engine=False)
    await engine.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://wc") as http:
            for path in ("/health", "/docs", "/openapi.json"):
                assert (await http.get(path)).status_code == 200, path
            assert (await http.get("/nodes")).status_code == 401
            for headers in (
                {"Authorization": f"Bearer {TOKEN}"},
                {"X-Client-Token": "other"},
                {"Authorization": "Basic " + base64.b64encode(f"podium:{TOKEN}".encode()).decode()},
            ):
                nodes = (await http.get("/nodes", headers=headers)).json()
                assert nodes["robotarm_1"]["node_url"] == "http://podium:***@robotarm_1:2000"
            # node tokens never show
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for path in ("/workcell", "/state", "/nodes", "/node/robotarm_1"):
                assert "node-secret" not in (await http.get(path, headers=headers)).text, path
    finally:
        await engine.stop()


async def test_serve_workcell_makes_a_token_and_clients_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKCELL_API_TOKEN", raising=False)
    engine = make_engine(tmp_path)
    async with serve_workcell(engine) as url:
        assert url.startswith("http://podium:") and "@127.0.0.1:" in url
        # the clients are synchronous: run them off the loop that serves the app
        await asyncio.to_thread(use_clients, url, sorted(engine.nodes), monkeypatch)


def use_clients(url: str, node_names: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    bare = "http://" + url.split("@", 1)[1]
    token = url.split("@", 1)[0].rsplit(":", 1)[1]
    with WorkcellClient(url) as client:
        assert sorted(client.list_nodes()) == node_names and client.url == bare
    with WorkcellClient(bare, token=token) as client:
        assert client.get_workcell_state().status.ok
    monkeypatch.setenv("WORKCELL_API_TOKEN", token)
    with WorkcellClient(bare) as client:
        assert client.get_workcell_state().status.ok
    with WorkcellClient(bare, token="wrong") as client:
        with pytest.raises(WorkcellClientError) as caught:
            client.get_nodes()
        assert caught.value.status_code == 401
    assert httpx.get(f"{bare}/health").status_code == 200
    assert httpx.get(f"{bare}/state").status_code == 401


def test_node_entries_with_tokens_in_the_settings() -> None:
    settings = WorkcellManagerSettings(
        nodes={"a": {"url": "http://h:2000", "token": "tk"}, "b": "http://h:2001"}  # type: ignore[dict-item]
    )
    assert settings.nodes == {"a": "http://podium:tk@h:2000", "b": "http://h:2001"}
    with pytest.raises(ValueError):
        WorkcellManagerSettings(nodes={"a": {"url": "http://h", "secret": "x"}})  # type: ignore[dict-item]
