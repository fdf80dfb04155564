"""The twins of MADSci's example-lab instruments declare MADSci's actions and arguments, and act like them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from podium.clock import ManualClock
from podium.nodes import LocationArgument
from podium.nodes.sim import EXAMPLE_LAB_NODE_TYPES, asgi_clients, make_example_lab_nodes
from podium.testing import drive

# Read off MADSci 0.8's examples/example_lab/example_modules/*.py: action -> {argument: required}, by kind.
MADSCI_ACTIONS: dict[str, dict[str, dict[str, dict[str, bool]]]] = {
    "liquidhandler_1": {
        "run_command": {"args": {"command": True}},
        "run_protocol": {"files": {"protocol": True}},
        "deck_transfer": {"locations": {"source_location": True, "target_location": True}},
    },
    "robotarm_1": {
        "transfer": {"locations": {"source": True, "target": True}, "args": {"speed": False}},
    },
    "platereader_1": {"read_well": {}, "read_plate": {}, "read_plates": {}},
}
ADVANCED_SUBSET = {
    "stall": {},
    "return_none": {},
    "return_file_and_json": {},
    "test_simple_string": {"args": {"message": True}},
    "test_multiple_simple_args": {"args": {"name": True, "age": True, "height": True, "active": True}},
    "test_optional_string": {"args": {"message": True, "prefix": False}},
    "test_file_input": {"files": {"input_file": True}},
    "test_location_input": {"locations": {"target_location": True}},
}


def declared(info: dict[str, Any], action: str) -> dict[str, dict[str, bool]]:
    spec = info["actions"][action]
    out = {}
    for kind in ("args", "locations", "files"):
        if spec[kind]:
            out[kind] = {name: arg["required"] for name, arg in spec[kind].items()}
    return out


def test_the_twins_declare_madscis_actions_and_arguments() -> None:
    nodes = make_example_lab_nodes(default_duration_s=0)
    assert sorted(nodes) == sorted(EXAMPLE_LAB_NODE_TYPES)
    for name, actions in MADSCI_ACTIONS.items():
        info = nodes[name].info.model_dump(mode="json")
        assert sorted(info["actions"]) == sorted(actions), name
        for action, expected in actions.items():
            assert declared(info, action) == expected, (name, action)
    lh2 = nodes["liquidhandler_2"].info.model_dump(mode="json")
    assert lh2["node_name"] == "liquidhandler_2" and sorted(lh2["actions"]) == sorted(
        MADSCI_ACTIONS["liquidhandler_1"]
    )
    advanced = nodes["advanced_example_node"].info.model_dump(mode="json")
    for action, expected in ADVANCED_SUBSET.items():
        assert declared(advanced, action) == expected, action
    arm = nodes["robotarm_1"].info.model_dump(mode="json")["actions"]["transfer"]
    assert arm["args"]["speed"]["argument_type"] == "float"
    assert arm["locations"]["source"]["description"] == "The source location"


async def test_their_results_have_madscis_shapes_and_take_clock_time(tmp_path: Path) -> None:
    clock = ManualClock()
    nodes = make_example_lab_nodes(clock=clock, work_dir=tmp_path)
    clients = asgi_clients(nodes, clock=clock)
    protocol = tmp_path / "p.txt"
    protocol.write_text("aspirate\n")
    deck = LocationArgument(representation={"deck_position": 1}, location_name="liquidhandler_1.deck_1")
    carriage = LocationArgument(representation=[15, 10, 8], location_name="platereader_1.plate_carriage")
    try:
        start = clock.monotonic()
        echo = await drive(clock, clients["liquidhandler_2"].run_action("run_command", {"command": "mix"}))
        assert echo.ok and echo.json_result == "mix"
        # MADSci's wait_time: 2 s of the node's clock.
        assert clock.monotonic() - start == pytest.approx(2.0)
        ran = await drive(
            clock, clients["liquidhandler_1"].run_action("run_protocol", files={"protocol": protocol})
        )
        assert ran.json_result == {"protocol_name": "p.txt"}
        # A transfer takes 100 / speed seconds (speed 50 mm/s by default, clamped to 1-100).
        t0 = clock.monotonic()
        moved = await drive(
            clock,
            clients["robotarm_1"].run_action("transfer", {"source": deck, "target": carriage, "speed": 100}),
        )
        assert moved.ok and moved.json_result is None and clock.monotonic() - t0 == pytest.approx(1.0)
        read = await drive(
            clock, clients["platereader_1"].run_action("read_plate", download_dir=tmp_path / "read")
        )
        rows = read.files["file"].read_text().splitlines()
        assert rows[0] == "well,absorbance" and len(rows) == 97
        both = await drive(
            clock, clients["platereader_1"].run_action("read_plates", download_dir=tmp_path / "both")
        )
        assert sorted(both.files) == ["file_path_1", "file_path_2"]
        labelled = await drive(clock, clients["advanced_example_node"].run_action("return_file_and_json"))
        assert labelled.json_result == 5 and labelled.file_keys == ["file"]
        args = {"name": "ada", "age": 36, "height": 1.7, "active": True}
        multi = await drive(
            clock, clients["advanced_example_node"].run_action("test_multiple_simple_args", args)
        )
        assert multi.json_result == {"name": "ADA", "age_doubled": 72, "height_cm": 170.0, "status": "active"}
    finally:
        for c in clients.values():
            await c.aclose()
        for n in nodes.values():
            await n.aclose()
