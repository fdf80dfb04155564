"""NodeClient: end-to-end actions, frugal waiting, rate limits, errors and reconcile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.clock import ManualClock
from podium.errors import InvalidInputError
from podium.ids import new_ulid_str
from podium.nodes import (
    ActionStatus,
    ActionTimeoutError,
    LocationArgument,
    NodeClient,
    NodeProtocolError,
    NodeRateLimitedError,
    NodeRequestError,
    NodeUnreachableError,
    send_admin_command_all,
)
from podium.nodes.sim import SimNode
from podium.testing import drive


async def test_read_plate_end_to_end_on_virtual_time(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock, tmp_path: Path
) -> None:
    reader = sim["platereader_1"]
    client = client_for(reader)
    action_id = new_ulid_str()
    created: list[str] = []
    outcome = await drive(
        clock,
        client.run_action(
            "read_plate",
            {
                "wavelength_nm": 450,
                "plate": LocationArgument(representation="tray", location_name="reader.tray"),
            },
            action_id=action_id,
            download_dir=tmp_path / "out",
            on_created=created.append,
        ),
    )
    assert outcome.ok and outcome.action_id == action_id == outcome.node_action_id == created[0]
    assert clock.monotonic() == pytest.approx(20.0)  # the reader's simulated duration, no real time
    assert outcome.json_result["n_wells"] == 96 and outcome.json_result["plate"] == "tray"
    csv = outcome.files["file"].read_text().splitlines()
    assert csv[0] == "well,absorbance" and len(csv) == 97 and csv[1].startswith("A1,")
    assert outcome.node_status is not None and outcome.node_status.ready
    # create, start (held 5 s), 3 long polls of 5 s, result, download, status: no eager polling
    assert client.requests_sent == 8


async def test_files_in_and_async_on_created(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock, tmp_path: Path
) -> None:
    protocol = tmp_path / "mix.txt"
    protocol.write_text("# mix\naspirate 10\ndispense 10\naspirate 5\ndispense 5\n")
    seen: list[str] = []

    async def journal(node_action_id: str) -> None:
        seen.append(node_action_id)

    client = client_for(sim["liquidhandler_1"])
    outcome = await drive(
        clock,
        client.run_action("run_protocol", {"repeats": 2}, files={"protocol": protocol}, on_created=journal),
    )
    assert outcome.ok, outcome.errors
    assert outcome.json_result == {
        "protocol": "mix.txt",
        "steps": 4,
        "repeats": 2,
        "tips_used": 4,
        "tips_remaining": 92,
    }
    assert seen == [outcome.node_action_id]
    assert (await client.get_state())["tips_remaining"] == 92


async def test_failed_action_is_an_outcome_not_an_exception(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    sealer = sim["sealer_1"]
    sealer.inject_failure(fail_next=1, message="heater fault")
    client = client_for(sealer)
    outcome = await drive(clock, client.run_action("seal"))
    assert outcome.status is ActionStatus.FAILED and outcome.error_message == "heater fault"
    assert outcome.node_status is not None and outcome.node_status.ready
    assert (await drive(clock, client.run_action("seal"))).ok


async def test_bad_args_and_unknown_action_raise_request_errors(
    sim: dict[str, SimNode], client_for: Any
) -> None:
    client = client_for(sim["robotarm_1"])
    with pytest.raises(NodeRequestError) as err:
        await client.run_action("transfer", {"source": {"representation": 1}})
    assert err.value.status_code == 422 and err.value.detail[0]["loc"] == ["body", "args", "target"]
    with pytest.raises(NodeRequestError) as err:
        await client.run_action("fly", {})
    assert err.value.status_code == 404
    with pytest.raises(InvalidInputError):
        await client.send_admin_command("dance")


async def test_timeout_leaves_the_action_running_and_reconcile_finds_it(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    client = client_for(sim["robotarm_1"])
    args = {"source": {"representation": "a"}, "target": {"representation": "b"}}
    action_id = new_ulid_str()
    with pytest.raises(ActionTimeoutError) as err:
        await drive(clock, client.run_action("transfer", args, action_id=action_id, timeout_s=3))
    assert err.value.last_status == "running" and isinstance(err.value, TimeoutError)
    # Given a crash here, the engine knows action_id; the node still has the action.
    seen = await client.reconcile(action_id, action_name="transfer")
    assert seen.status is ActionStatus.RUNNING
    done = await drive(clock, client.reconcile(action_id, action_name="transfer", wait=True))
    assert done.ok and done.json_result["target"] == "b"
    lost = await client.reconcile(new_ulid_str())
    assert lost.status is ActionStatus.UNKNOWN


async def test_admin_to_all_nodes(sim: dict[str, SimNode], client_for: Any) -> None:
    clients = {name: client_for(node) for name, node in sim.items()}
    answers = await send_admin_command_all(clients, "lock")
    assert all(getattr(a, "success", False) for a in answers.values())
    assert all(node.status.locked for node in sim.values())
    await send_admin_command_all(clients, "unlock")
    assert (await clients["sealer_1"].get_status()).ready
    info = await clients["sealer_1"].get_info()
    assert set(info.actions) == {"seal", "peel"}
    assert any(e["event_type"] == "admin_command" for e in (await clients["sealer_1"].get_log()).values())
    assert await clients["sealer_1"].set_config({"note": 1})


class FakeMadsciNode:
    """A MADSci-like node behind httpx.MockTransport: no long-poll, its own ids, optional 429s."""

    def __init__(self, *, running_polls: int = 3, rate_limited: int = 0) -> None:
        self.running_polls, self.rate_limited = running_polls, rate_limited
        self.calls: list[str] = []
        self.node_id = new_ulid_str()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if self.rate_limited:
            self.rate_limited -= 1
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"detail": "Rate limit exceeded"})
        if request.method == "POST" and path == "/action/add":
            body = json.loads(request.content)
            assert body["args"] == {"a": 1}
            return httpx.Response(200, json={"action_id": self.node_id})
        if path.endswith("/start"):
            return httpx.Response(200, json={"action_id": self.node_id, "status": "running", "files": None})
        if path == "/status":
            return httpx.Response(200, json={"busy": False})
        if path.endswith("/status"):
            assert "wait_s" in request.url.params
            if self.running_polls:
                self.running_polls -= 1
                return httpx.Response(200, json="running")
            return httpx.Response(200, json="succeeded")
        if path.endswith("/result"):
            return httpx.Response(
                200, json={"action_id": self.node_id, "status": "succeeded", "json_result": 2, "files": None}
            )
        return httpx.Response(404, json={"detail": "Not Found"})


async def test_polls_a_node_without_long_poll_with_growing_backoff(clock: ManualClock) -> None:
    fake = FakeMadsciNode(running_polls=4)
    async with NodeClient("http://madsci", transport=httpx.MockTransport(fake), clock=clock) as client:
        outcome = await drive(clock, client.run_action("add", {"a": 1}))
    assert outcome.ok and outcome.json_result == 2
    assert outcome.node_action_id == fake.node_id != outcome.action_id
    assert [c for c in fake.calls if c.endswith("/status") and "/action/" in c] == [
        f"GET /action/add/{fake.node_id}/status"
    ] * 5
    assert clock.monotonic() == pytest.approx(0.02 + 0.04 + 0.08 + 0.16)


async def test_waits_out_429_retry_after(clock: ManualClock) -> None:
    fake = FakeMadsciNode(running_polls=0, rate_limited=2)
    transport = httpx.MockTransport(fake)
    async with NodeClient(
        "http://madsci", transport=transport, clock=clock, max_rate_limit_wait_s=10
    ) as client:
        outcome = await drive(clock, client.run_action("add", {"a": 1}, refresh_status=False))
        assert outcome.ok and clock.monotonic() == pytest.approx(4.0)
        fake.rate_limited = 10
        with pytest.raises(NodeRateLimitedError):
            await drive(clock, client.get_status())


async def test_unreachable_and_protocol_errors(clock: ManualClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with NodeClient(
        "http://gone", transport=httpx.MockTransport(refuse), clock=clock, retries=2
    ) as client:
        with pytest.raises(NodeUnreachableError, match="http://gone"):
            await drive(clock, client.get_status())
        assert client.requests_sent == 3

    def garbage(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    async with NodeClient("http://odd", transport=httpx.MockTransport(garbage), clock=clock) as client:
        with pytest.raises(NodeProtocolError):
            await client.get_info()


async def test_unreachable_over_a_real_closed_port() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with NodeClient(f"http://127.0.0.1:{port}", retries=0, timeout_s=2) as client:
        with pytest.raises(NodeUnreachableError):
            await client.get_status()


async def test_a_short_action_takes_three_requests_with_status_piggybacked(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    arm = sim["robotarm_1"]
    client = client_for(arm)
    outcome = await drive(clock, client.run_action("home", {}))
    assert outcome.ok and outcome.node_status is not None and outcome.node_status.ready
    # create, start held until the end (result + node status in the answer): no status/result/status calls
    assert client.requests_sent == 2
