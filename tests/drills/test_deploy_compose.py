"""deploy/compose.yaml is not a stale picture: its three podium services, run with their own commands and
environment (host names and ports replaced by loopback ones, the store by a PostgreSQL schema of this test),
serve one deployment: a job submitted through one instance is done by a worker started as the compose file
starts it (registered with another instance) and read through the third. nginx.conf balances exactly those
three services."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from podium.client import AsyncJobClient
from tests.drills.fleet import Fleet, Proc, fleet, free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with compose's ``${NAME:-default}`` read as its default."""
    return {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in service["environment"].items()}


def _local(arg: str) -> str:
    return arg.replace("/app/", f"{ROOT}/")


def test_compose_and_nginx_describe_three_instances_on_one_store() -> None:
    services = _compose()["services"]
    podiums = sorted(name for name in services if name.startswith("podium-"))
    assert podiums == ["podium-1", "podium-2", "podium-3"]
    envs = [_env(services[name]) for name in podiums]
    assert len({e["PODIUM_STORE_URL"] for e in envs}) == 1, "every instance on the same store"
    assert envs[0]["PODIUM_STORE_URL"].startswith("postgresql://")
    assert [e["INSTANCE_ID"] for e in envs] == podiums
    upstream = re.findall(r"server (podium-\d):(\d+)", (DEPLOY / "nginx.conf").read_text())
    port = services["podium-1"]["command"][services["podium-1"]["command"].index("--port") + 1]
    assert upstream == [(name, port) for name in podiums]
    for name, service in services.items():
        if name.startswith("worker-"):
            assert Path(_local(service["entrypoint"][-1])).is_file()
            assert _env(service)["ORCHESTRATOR_URL"] == f"http://lb:{port}"


async def _serve(f: Fleet, name: str, service: dict[str, Any], store_url: str) -> Proc:
    """Start a compose service's ``podium`` command here, on loopback and on ``store_url``."""
    command = [_local(a) for a in service["command"]]
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    env = {**os.environ, **_env(service), "PODIUM_STORE_URL": store_url, "LOG_LEVEL": "WARNING"}
    return await f.launch(name, command, port, env)


async def test_the_compose_services_run_as_one_deployment(postgres_dsn: str, tmp_path: Path) -> None:
    from tests.conformance.conftest import drop_pg_schema

    services = _compose()["services"]
    store_url = f"{postgres_dsn}?schema=podium_compose_{uuid.uuid4().hex[:10]}"
    try:
        async with fleet(store_url, tmp_path) as f:
            servers = [
                await _serve(f, name, services[name], store_url)
                for name in ("podium-1", "podium-2", "podium-3")
            ]
            worker = services["worker-1"]
            env = {**os.environ, **_env(worker), "ORCHESTRATOR_URL": servers[2].url, "LOG_LEVEL": "WARNING"}
            popen = subprocess.Popen(
                [sys.executable, _local(worker["entrypoint"][-1])],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            f.workers.append(Proc("worker-1", popen))
            token = _env(services["podium-1"])["CLIENT_TOKEN"]
            first, second = (
                AsyncJobClient(servers[0].url, token=token),
                AsyncJobClient(servers[1].url, token=token),
            )
            try:
                job_id = await first.submit("transcode", {"path": "/videos/a"})
                view = await second.wait(job_id, timeout_s=30)
                assert view.status == "finished", view
                assert "/videos/a.mp4" in str(view.result)
                assert "worker-1" in {w.worker_id for w in await first.workers()}
            finally:
                await first.aclose()
                await second.aclose()
    finally:
        await drop_pg_schema(store_url)
