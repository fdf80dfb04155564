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
from podium.nodes.client import PollPlan, estimate_end_s, expected_end_s
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
    """A MADSci-like node behind httpx.MockTransport: no long-poll, its own ids, optional 429s; an action
    runs ``duration_s`` of the clock after its start (0: it has ended by the time the start answers)."""

    def __init__(self, clock: ManualClock, *, duration_s: float = 0.0, rate_limited: int = 0) -> None:
        self.clock, self.duration_s, self.rate_limited = clock, duration_s, rate_limited
        self.calls: list[str] = []
        self.node_id = new_ulid_str()
        self.ends_at: float | None = None

    def status(self) -> str:
        assert self.ends_at is not None
        return "succeeded" if self.clock.monotonic() >= self.ends_at else "running"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.calls.append(f"{request.method} {path}")
        if self.rate_limited:
            self.rate_limited -= 1
            return httpx.Response(429, headers={"Retry-After": "2"}, json={"detail": "Rate limit exceeded"})
        if request.method == "POST" and path.startswith("/action/add") and path.count("/") == 2:
            body = json.loads(request.content)
            assert body["args"] == {"a": 1}
            self.node_id = new_ulid_str()
            return httpx.Response(200, json={"action_id": self.node_id})
        if path.endswith("/start"):
            self.ends_at = self.clock.monotonic() + self.duration_s
            return httpx.Response(
                200, json={"action_id": self.node_id, "status": self.status(), "files": None}
            )
        if path == "/status":
            return httpx.Response(200, json={"busy": False})
        if path.endswith("/status"):
            return httpx.Response(200, json=self.status())
        if path.endswith("/result"):
            done = self.status() == "succeeded"
            return httpx.Response(
                200,
                json={
                    "action_id": self.node_id,
                    "status": self.status(),
                    "json_result": 2 if done else None,
                    "files": None,
                },
            )
        return httpx.Response(404, json={"detail": "Not Found"})


async def test_a_madsci_action_that_ends_within_its_start_costs_two_requests(clock: ManualClock) -> None:
    fake = FakeMadsciNode(clock)
    async with NodeClient("http://madsci", transport=httpx.MockTransport(fake), clock=clock) as client:
        outcome = await drive(clock, client.run_action("add", {"a": 1}, refresh_status=False))
    assert outcome.ok and outcome.node_action_id == fake.node_id != outcome.action_id
    assert len(fake.calls) == 2 and fake.calls[1].endswith("/start")


async def test_polls_a_node_without_long_poll_near_the_learned_end(clock: ManualClock) -> None:
    fake = FakeMadsciNode(clock, duration_s=1.0)
    runs: list[tuple[int, float]] = []
    async with NodeClient("http://madsci", transport=httpx.MockTransport(fake), clock=clock) as client:
        for _ in range(6):
            sent = len(fake.calls)
            outcome = await drive(clock, client.run_action("add", {"a": 1}, refresh_status=False))
            assert outcome.ok and outcome.json_result == 2
            assert fake.ends_at is not None
            runs.append((len(fake.calls) - sent, clock.monotonic() - fake.ends_at))
    # The first run knows nothing: one status probe (the node does not hold it), then the result is polled
    # on a growing backoff (20, 40, 80 ... ms), and the end is seen late.
    first_requests, first_late = runs[0]
    assert fake.calls[2].endswith("/status") and all(
        c.endswith("/result") for c in fake.calls[3:first_requests]
    )
    assert first_late > 0.1
    # Once the duration is learned, nothing is sent before the end is near, and it is seen within a few ms
    # with create + start + at most 3 result polls.
    for requests, late in runs[-2:]:
        assert requests <= 5 and late < 0.01, runs


def test_poll_plan_waits_for_the_expected_end_then_polls_tightly() -> None:
    plan = PollPlan(started_at=10.0, expected_s=2.0, initial_s=0.02, factor=2.0, max_s=1.0, tight_s=0.004)
    assert plan.next_delay_s(10.5) == pytest.approx(1.5)
    assert [round(plan.next_delay_s(12.0), 4) for _ in range(3)] == [0.004, 0.006, 0.009]
    blind = PollPlan(started_at=0.0, expected_s=None, initial_s=0.02, factor=2.0, max_s=0.05, tight_s=0.004)
    assert [blind.next_delay_s(0.0) for _ in range(3)] == [0.02, 0.04, 0.05]
    assert estimate_end_s(0.99, 1.0, tight_s=0.004) == (pytest.approx(0.995), True)
    assert estimate_end_s(0.6, 1.2, tight_s=0.004) == (0.6, False)
    assert expected_end_s([(0.6, False), (1.01, True), (0.99, True)]) == 0.99
    assert expected_end_s([(0.6, False), (0.8, False)]) == 0.8


async def test_waits_out_429_retry_after(clock: ManualClock) -> None:
    fake = FakeMadsciNode(clock, rate_limited=2)
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
