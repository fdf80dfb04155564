"""Node API tokens: with tokens set, every route but the docs refuses a missing or wrong token."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from podium.nodes import NodeClient, NodeRequestError, NodeServer, RestNode, action
from podium.nodes.sim import asgi_clients, make_sim_nodes
from podium.tokens import DOCS_PATHS, TokenSet, url_with_token

TOKEN = "node-token-123"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Tiny(RestNode):
    """A node with one action and a route of its own."""

    @action
    def add(self, a: int, b: int = 1) -> dict[str, int]:
        return {"sum": a + b}

    def configure_app(self, app: object) -> None:
        @app.get("/custom")  # type: ignore[attr-defined, misc]
        async def custom() -> dict[str, bool]:
            return {"custom": True}


def routes_of(node: RestNode) -> list[tuple[str, str]]:
    app = node.create_app()
    out = []
    for route in app.routes:
        path = getattr(route, "path", "")
        if path in DOCS_PATHS:
            continue
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in sorted(getattr(route, "methods", set()) - {"HEAD"}):
            out.append((method, concrete))
    return out


def test_the_walk_covers_every_route() -> None:
    routes = routes_of(Tiny(api_tokens=[TOKEN]))
    paths = {p for _, p in routes}
    assert {"/status", "/info", "/state", "/log", "/config", "/admin/x", "/action", "/custom"} <= paths
    assert "/action/x/x/upload/x" in paths and "/action/x/x/start" in paths and "/action/x/download" in paths
    assert len(routes) >= 16


@pytest.mark.parametrize("credential", ["missing", "wrong-bearer", "wrong-basic", "wrong-header"])
async def test_every_route_refuses_a_missing_or_wrong_token(credential: str) -> None:
    node = Tiny(api_tokens=[TOKEN])
    headers = {
        "missing": {},
        "wrong-bearer": {"Authorization": "Bearer nope"},
        "wrong-basic": {"Authorization": basic("podium", "nope")},
        "wrong-header": {"X-Client-Token": "nope"},
    }[credential]
    failures = []
    async with httpx.AsyncClient(transport=node.asgi_transport(), base_url="http://node") as http:
        for method, path in routes_of(node):
            r = await http.request(method, path, headers=headers, json={})
            if r.status_code != 401 or "token" not in r.json()["detail"]:
                failures.append((method, path, r.status_code))
    assert not failures
    await node.aclose()


async def test_docs_are_public_and_the_right_token_opens_every_form() -> None:
    node = Tiny(api_tokens=TokenSet.from_tokens([TOKEN, "second"]))
    async with httpx.AsyncClient(transport=node.asgi_transport(), base_url="http://node") as http:
        assert (await http.get("/openapi.json")).status_code == 200
        assert (await http.get("/docs")).status_code == 200
        r = await http.get("/status")
        assert r.status_code == 401 and "missing token" in r.json()["detail"]
        assert "Bearer" in r.headers["www-authenticate"]
        for headers in (
            {"Authorization": f"Bearer {TOKEN}"},
            {"Authorization": "Bearer second"},
            {"X-Client-Token": TOKEN},
            {"Authorization": basic("podium", TOKEN)},
        ):
            assert (await http.get("/custom", headers=headers)).json() == {"custom": True}
    await node.aclose()


async def test_node_client_sends_the_token() -> None:
    node = Tiny(api_tokens=[TOKEN])
    async with NodeClient("http://node", token=TOKEN, transport=node.asgi_transport()) as client:
        out = await client.run_action("add", {"a": 2})
        assert out.ok and out.json_result == {"sum": 3}
    async with NodeClient("http://node", token="wrong", transport=node.asgi_transport()) as client:
        with pytest.raises(NodeRequestError) as caught:
            await client.get_status()
        assert caught.value.status_code == 401 and TOKEN not in str(caught.value)
    await node.aclose()


async def test_token_in_the_url_userinfo_over_a_real_socket() -> None:
    node = Tiny(api_tokens=[TOKEN])
    with NodeServer(node) as server:
        url = url_with_token(server.url, TOKEN)
        async with NodeClient(url) as client:
            assert client.url == server.url  # the token is not shown
            assert (await client.get_info()).node_name == "tiny"
            assert (await client.run_action("add", {"a": 5})).json_result == {"sum": 6}
        async with NodeClient(server.url) as client:
            with pytest.raises(NodeRequestError) as caught:
                await client.get_status()
            assert caught.value.status_code == 401
        # the bare form MADSci's httpx client sends for http://podium:<token>@host
        with httpx.Client() as http:
            assert http.get(f"{url}/status").status_code == 200
            assert http.get(f"{server.url}/status").status_code == 401


async def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_API_TOKEN", "env-one, env-two")
    node = Tiny()
    assert node.api_tokens.matches("env-one") and node.api_tokens.matches("env-two")
    assert not node.api_tokens.matches(TOKEN)
    monkeypatch.delenv("NODE_API_TOKEN")
    assert not Tiny().api_tokens  # no token: the node answers anyone, as before
    assert Tiny(api_tokens=[]).api_tokens.matches("x") is False


async def test_sim_nodes_with_a_token() -> None:
    nodes = make_sim_nodes(default_duration_s=0, api_token=TOKEN)
    for client in asgi_clients(nodes, token=TOKEN).values():
        assert (await client.get_status()).ready
        await client.aclose()
    for client in asgi_clients(nodes).values():
        with pytest.raises(NodeRequestError):
            await client.get_status()
        await client.aclose()
    for node in nodes.values():
        await node.aclose()
