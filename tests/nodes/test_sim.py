"""Simulated instruments: behaviour, durations on the node clock, seeds and failure injection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.nodes import ActionStatus
from podium.nodes.sim import FailurePlan, PlateReaderNode, SimNode, make_sim_nodes
from podium.testing import drive

ARM_ARGS = {"source": {"representation": "a", "location_name": "A"}, "target": {"representation": "b"}}


async def test_liquid_handler_consumes_tips_and_volume(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    lh = sim["liquidhandler_1"]
    client = client_for(lh)
    out = await drive(clock, client.run_action("aspirate", {"volume_ul": 300, "well": "B2"}))
    assert out.ok and out.json_result["tips_remaining"] == 95 and out.json_result["held_ul"] == 300
    over = await drive(clock, client.run_action("aspirate", {"volume_ul": 800}))
    assert over.status is ActionStatus.FAILED and "capacity" in over.error_message
    out = await drive(
        clock, client.run_action("dispense", {"target": {"representation": "plate", "location_name": "P"}})
    )
    assert out.ok and out.json_result["held_ul"] == 0 and lh.node_state["dispensed"] == {"P:A1": 300}
    assert lh.node_state["has_tip"] is False
    assert clock.monotonic() == pytest.approx(4.0)  # aspirate 2 s + dispense 2 s; refused ones take no time


async def test_robot_arm_reports_what_it_moved(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    out = await drive(clock, client_for(sim["robotarm_1"]).run_action("transfer", ARM_ARGS))
    assert out.json_result == {
        "source": "a",
        "target": "b",
        "source_name": "A",
        "target_name": None,
        "resource_id": None,
    }
    assert sim["robotarm_1"].node_state == {"position": "b", "transfers": 1}


async def test_sealer_state(sim: dict[str, SimNode], client_for: Any, clock: ManualClock) -> None:
    client = client_for(sim["sealer_1"])
    assert (await drive(clock, client.run_action("seal", {"time_s": 3}))).ok
    assert clock.monotonic() == pytest.approx(3.0)
    again = await drive(clock, client.run_action("seal"))
    assert again.status is ActionStatus.FAILED and again.errors[0].error_type == "AlreadySealed"
    assert (await drive(clock, client.run_action("peel"))).ok


async def test_plate_reader_is_deterministic_for_a_seed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    def values(seed: int) -> list[float]:
        node = PlateReaderNode(seed=seed, default_duration_s=0, work_dir=tmp_path / str(seed))
        return [node.rng.random() for _ in range(3)]

    assert values(1) == values(1) != values(2)


async def test_failure_injection_next_n_probability_and_errored(tmp_path) -> None:  # type: ignore[no-untyped-def]
    clock = ManualClock()
    nodes = make_sim_nodes(clock=clock, default_duration_s=0, seed=3, work_dir=tmp_path)
    arm = nodes["robotarm_1"]
    arm.inject_failure(fail_next=2, message="gripper slipped", actions=["transfer"])
    from podium.nodes.sim import asgi_clients

    client = asgi_clients({"arm": arm}, clock=clock)["arm"]
    results = [(await client.run_action("transfer", ARM_ARGS)).status for _ in range(3)]
    assert results == ["failed", "failed", "succeeded"]
    assert (await client.run_action("home")).ok  # not in the plan's actions
    arm.inject_failure(fail_next=0, probability=0.5, message="flaky")
    flaky = [(await client.run_action("home")).ok for _ in range(20)]
    assert 0 < flaky.count(False) < 20
    arm.inject_failure(fail_next=1, message="motor fault", errored=True)
    out = await client.run_action("home")
    assert out.status is ActionStatus.FAILED and out.node_status is not None and out.node_status.errored
    assert (await client.run_action("home")).status is ActionStatus.NOT_READY
    await client.send_admin_command("reset")
    assert (await client.run_action("home")).ok
    await client.aclose()
    for node in nodes.values():
        await node.aclose()


async def test_failures_over_http(sim: dict[str, SimNode], http_for: Any) -> None:
    http = http_for(sim["sealer_1"])
    plan = {"fail_next": 1, "message": "x", "actions": ["seal"]}
    assert (await http.post("/sim/failures", json=plan)).json()["fail_next"] == 1
    assert FailurePlan.model_validate((await http.get("/sim/failures")).json()).message == "x"
    assert (await http.delete("/sim/failures")).json()["fail_next"] == 0
    assert (await http.post("/sim/failures", json={"probability": 2})).status_code == 422


async def test_pause_holds_a_running_sim_action(
    sim: dict[str, SimNode], client_for: Any, clock: ManualClock
) -> None:
    sealer = sim["sealer_1"]
    client = client_for(sealer)
    await client.send_admin_command("pause")
    refused = await client.run_action("seal")
    assert refused.status is ActionStatus.NOT_READY
    await client.send_admin_command("resume")
    run = asyncio.ensure_future(drive(clock, client.run_action("seal", {"time_s": 10})))
    while not sealer.status.running_actions:
        await asyncio.sleep(0)
    sealer.pause()
    await clock.advance(10)
    assert not run.done() and sealer.status.busy
    sealer.resume()
    assert (await asyncio.wait_for(run, 5)).ok
