"""Bad input to the workcell API: a 4xx naming the field, nothing written, and the data folder still loads.

Each case goes to the real ASGI app (through httpx) of a workcell on a SQLite data folder with a
simulated liquid handler served over HTTP. After the refusal the server is stopped and a new one is
started on the same folder: it must load, and the store and the folder must be exactly as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.nodes import serve_nodes
from podium.nodes.sim import LiquidHandlerNode
from podium.store import Put
from podium.wire.jsonschema import schema_violation
from podium.workcell import WorkcellEngine
from podium.workcell.server import build_engine, create_app

TOKEN = "test-token-bad-input"
KINDS = [
    "workcell.definition",
    "workcell.workflow",
    "workcell.node",
    "workcell.location",
    "workcell.resource",
    "workcell.datapoint",
    "workcell.status",
    "workcell.action",
]
HUGE = "99999999999999999999"
FIFTY_MB = 50 * 1024 * 1024

WITH_FILE = {
    "name": "with_file",
    "parameters": {"file_inputs": [{"key": "protocol"}]},
    "steps": [
        {
            "name": "Run",
            "node": "liquidhandler_1",
            "action": "run_protocol",
            "files": {"protocol": "protocol"},
        }
    ],
}
BAD_ARGS = {
    "name": "bad_args",
    "steps": [
        {"name": "Aspirate", "node": "liquidhandler_1", "action": "aspirate", "args": {"volume_ul": "hot"}}
    ],
}


@contextlib.asynccontextmanager
async def workcell_server(
    data_dir: Path, node_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, WorkcellEngine]]:
    engine = build_engine(
        None,
        data_dir=data_dir,
        nodes={"liquidhandler_1": node_url},
        scheduler_update_interval=30.0,
        node_update_interval=30.0,
    )
    app = create_app(engine, api_tokens=[TOKEN])
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://workcell", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as http,
    ):
        http.app = app  # type: ignore[attr-defined]
        yield http, engine


async def fingerprint(engine: WorkcellEngine, data_dir: Path) -> dict[str, Any]:
    """Every workcell record (id, version, data) and every file of the data folder but the database's."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        out[kind] = [(r.id, r.version, r.data) for r in await engine.store.list(kind, limit=10_000)]
    out["files"] = sorted(
        str(p.relative_to(data_dir))
        for p in data_dir.rglob("*")
        if p.is_file() and not p.name.startswith("podium.db")
    )
    return out


@pytest.fixture
async def node_url(tmp_path: Path) -> AsyncIterator[str]:
    lh = LiquidHandlerNode(node_name="liquidhandler_1", default_duration_s=0.0, work_dir=tmp_path / "node")
    async with serve_nodes({"liquidhandler_1": lh}) as urls:
        yield urls["liquidhandler_1"]


async def _seed(data_dir: Path) -> dict[str, str]:
    """Two definitions and a consumable in a new data folder; the definitions' ids."""
    async with workcell_server(data_dir, "http://127.0.0.1:9") as (http, _):
        ids = {
            "with_file": (await http.post("/workflow_definition", json=WITH_FILE)).json(),
            "bad_args": (await http.post("/workflow_definition", json=BAD_ARGS)).json(),
        }
        tips = {"resource_name": "tips", "base_type": "discrete_consumable", "quantity": 10, "capacity": 96}
        assert (await http.post("/resource", json=tips)).status_code == 200
    return ids


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """One seeded data folder per module (its own event loop); each test works on a copy."""
    folder = tmp_path_factory.mktemp("seeded") / "data"
    return folder, asyncio.run(_seed(folder))


@pytest.fixture
def seeded(template: tuple[Path, dict[str, str]], tmp_path: Path) -> dict[str, str]:
    """A copy of the seeded data folder at ``tmp_path/data``; the definitions' ids."""
    shutil.copytree(template[0], tmp_path / "data")
    return template[1]


def _chunks(total: int, size: int = 1024 * 1024) -> Any:
    async def gen() -> AsyncIterator[bytes]:
        sent = 0
        yield b'{"name": "big", "steps": [], "description": "'
        while sent < total:
            yield b"x" * size
            sent += size
        yield b'"}'

    return gen()


CASES: list[tuple[str, str, str, dict[str, Any], int, str | None]] = [
    # (id, method, path, request kwargs, status, a field the answer must name)
    ("node-name-slash", "POST", "/node", {"params": {"node_name": "a/b", "node_url": "http://127.0.0.1:9"}}, 422, "node_name"),
    ("node-name-nul", "POST", "/node", {"params": {"node_name": "a\x00b", "node_url": "http://127.0.0.1:9"}}, 422, "node_name"),
    ("node-name-5000", "POST", "/node", {"params": {"node_name": "n" * 5000, "node_url": "http://127.0.0.1:9"}}, 422, "node_name"),
    ("node-url", "POST", "/node", {"params": {"node_name": "new_node", "node_url": "notaurl"}}, 422, "node_url"),
    ("node-url-port", "POST", "/node", {"params": {"node_name": "new_node", "node_url": "http://h:99999"}}, 422, "node_url"),
    ("archived-number", "GET", "/workflows/archived", {"params": {"number": HUGE}}, 422, "number"),
    ("datapoints-number", "GET", "/datapoints", {"params": {"number": HUGE}}, 422, "number"),
    ("quantity-nan", "POST", "/resource/tips/quantity", {"params": {"delta": "nan"}}, 422, "delta"),
    ("quantity-inf", "POST", "/resource/tips/quantity", {"params": {"delta": "-inf"}}, 422, "delta"),
    ("definition-50mb", "POST", "/workflow_definition", {"content": b"x" * FIFTY_MB, "headers": {"content-type": "application/json"}}, 413, None),
    ("definition-streamed", "POST", "/workflow_definition", {"content": "stream", "headers": {"content-type": "application/json"}}, 413, None),
    ("location-50mb", "POST", "/location", {"content": b"x" * FIFTY_MB, "headers": {"content-type": "application/json"}}, 413, None),
    ("definition-bigint", "POST", "/workflow_definition", {"json": {"name": "x", "steps": [{"node": "liquidhandler_1", "action": "aspirate", "args": {"volume_ul": 2**70}}]}}, 422, "volume_ul"),
    ("definition-invalid", "POST", "/workflow_definition", {"json": {"name": "x", "steps": "none"}}, 422, "steps"),
    ("json-inputs-nan", "POST", "/workflow", {"data": {"workflow_definition_id": "bad_args", "json_inputs": '{"v": NaN}'}}, 422, "json_inputs"),
]  # fmt: skip


def _file_cases(ids: dict[str, str]) -> dict[str, tuple[str, str, dict[str, Any], int, str]]:
    upload = {"files": [("files", ("protocol", b"aspirate 1\n", "text/plain"))]}
    return {
        "file-path-5000": (
            "POST",
            "/workflow",
            {
                "data": {
                    "workflow_definition_id": ids["with_file"],
                    "file_input_paths": json.dumps({"protocol": "/tmp/" + "p" * 5000 + ".txt"}),
                },
                **upload,
            },
            422,
            "file_input_paths",
        ),
        "file-key-5000": (
            "POST",
            "/workflow",
            {
                "data": {
                    "workflow_definition_id": ids["with_file"],
                    "file_input_paths": json.dumps({"k" * 5000: "a.txt"}),
                },
                **upload,
            },
            422,
            "file_input_paths",
        ),
        "step-argument-type": (
            "POST",
            "/workflow",
            {"data": {"workflow_definition_id": ids["bad_args"]}},
            422,
            "volume_ul",
        ),
    }


def _published_schema(app: Any, method: str, path: str, status: int) -> dict[str, Any]:
    doc = app.openapi()
    [template] = [t for t in doc["paths"] if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", t), path)]
    response = doc["paths"][template][method.lower()]["responses"][str(status)]
    schema = response["content"]["application/json"]["schema"]
    return {**schema, "components": doc["components"]}


def _names(body: Any, field: str) -> bool:
    """Whether a 422 body names ``field`` in an error's ``loc`` or ``field``."""
    for err in body["detail"]:
        parts = [str(p) for p in err["loc"]] + str(err.get("field") or "").split(".")
        if field in parts or any(p.startswith(field) for p in parts):
            return True
    return False


@pytest.mark.parametrize(
    "case", [c[0] for c in CASES] + ["file-path-5000", "file-key-5000", "step-argument-type"]
)
async def test_bad_input_is_refused_names_the_field_and_changes_nothing(
    case: str, tmp_path: Path, node_url: str, seeded: dict[str, str]
) -> None:
    data_dir = tmp_path / "data"
    table = {c[0]: c[1:] for c in CASES} | _file_cases(seeded)
    method, path, kwargs, status, field = table[case]
    if kwargs.get("content") == "stream":
        kwargs = {**kwargs, "content": _chunks(FIFTY_MB)}
    async with workcell_server(data_dir, node_url) as (http, engine):
        before = await fingerprint(engine, data_dir)
        # When: the bad request
        r = await http.request(method, path, **kwargs)
        # Then: the status, the field named, a body the published schema allows, nothing written
        assert r.status_code == status, (case, r.status_code, r.text[:500])
        body = r.json()
        if field is not None:
            assert _names(body, field), (case, body)
        violation = schema_violation(body, _published_schema(http.app, method, path, status))  # type: ignore[attr-defined]
        assert violation is None, (case, str(violation), body)
        assert await fingerprint(engine, data_dir) == before, case
        assert (await http.get("/workflows/active")).json() == {}
    # And a new server on the same folder loads, and finds it as it was.
    async with workcell_server(data_dir, node_url) as (http, engine):
        assert (await http.get("/health")).json()["healthy"] is True
        assert await fingerprint(engine, data_dir) == before, case
        assert sorted((await http.get("/nodes")).json()) == ["liquidhandler_1"]


async def test_a_stored_record_that_does_not_read_is_skipped_at_load(
    tmp_path: Path, node_url: str, seeded: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # Given: records an older release could have written (no checks then) in the data folder
    data_dir = tmp_path / "data"
    async with workcell_server(data_dir, node_url) as (_, engine):
        await engine.store.apply(
            Put("workcell.node", "a\x00b", {"node_url": "http://127.0.0.1:9"}),
            Put("workcell.node", "a/b", {"node_url": "http://127.0.0.1:9"}),
            Put("workcell.node", "odd", {"node_url": "notaurl"}),
            Put("workcell.resource", "broken", {"resource_name": 5}),
            Put("workcell.location", "broken", {"no": "name"}),
        )
    # When: the workcell starts on it
    async with workcell_server(data_dir, node_url) as (http, _):
        # Then: it serves, without the records it cannot use, and says which it skipped
        assert (await http.get("/health")).json()["healthy"] is True
        assert sorted((await http.get("/nodes")).json()) == ["liquidhandler_1"]
        assert [r["resource_name"] for r in (await http.get("/resources")).json()] == ["tips"]
        assert (await http.get("/locations")).json() == []
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 5, skipped
