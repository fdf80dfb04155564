"""MADSci's node-less ``transfer`` / ``transfer_resource`` steps: planned at submission into one robot step
per hop (podium.workcell.transfers), then run as ordinary node steps whose ``move`` effects carry the
plate through the resource model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from podium.store import MemoryStore
from podium.workcell import (
    ActionStatus,
    Location,
    LocationArgument,
    LocationTransferCapabilities,
    NodeRecord,
    ResourceDefinition,
    ResourceTable,
    WorkcellDefinition,
    WorkcellEngine,
    WorkcellManagerSettings,
    WorkflowValidationError,
    load_workflow_definition,
)
from podium.workcell.prepare import build_workflow
from podium.workcell.transfers import plan_transfer

ARM = {
    "node_name": "arm",
    "action": "transfer",
    "source_argument_name": "source",
    "target_argument_name": "target",
}
LIFT = {
    "node_name": "lift",
    "action": "move",
    "source_argument_name": "from_loc",
    "target_argument_name": "to_loc",
}


def loc(name: str, reps: dict[str, Any], *, resource_id: str | None = None, allow: bool = True) -> Location:
    return Location(
        location_name=name,
        location_id=f"id_{name}",
        representations=reps,
        resource_id=resource_id,
        allow_transfers=allow,
    )


def caps(*templates: dict[str, Any], **extra: Any) -> LocationTransferCapabilities:
    return LocationTransferCapabilities.model_validate({"transfer_templates": list(templates), **extra})


# A line of places: the arm reaches stack and deck, the lift reaches deck and hotel.
LINE = {
    "stack": loc("stack", {"arm": [0, 0, 0]}),
    "deck": loc("deck", {"arm": [1, 0, 0], "lift": "level_0"}),
    "hotel": loc("hotel", {"lift": "level_7"}),
    "island": loc("island", {"crane": "x"}),
}


def route(source: str, target: str, **kwargs: Any) -> list[tuple[str, str, str]]:
    kwargs.setdefault("locations", LINE)
    kwargs.setdefault("capabilities", caps(ARM, LIFT))
    hops = plan_transfer(source, target, **kwargs)
    return [(h.template.node_name, h.source.location_name, h.target.location_name) for h in hops]


# --- planning --------------------------------------------------------------------------------------


def test_single_hop_uses_the_node_with_a_representation_at_both_ends() -> None:
    assert route("stack", "deck") == [("arm", "stack", "deck")]
    assert route("hotel", "deck") == [("lift", "hotel", "deck")]


def test_multi_hop_chains_nodes_through_shared_locations() -> None:
    assert route("stack", "hotel") == [("arm", "stack", "deck"), ("lift", "deck", "hotel")]


def test_locations_may_be_named_by_id_and_the_same_place_needs_no_hop() -> None:
    assert route("id_stack", "id_deck") == [("arm", "stack", "deck")]
    assert route("deck", "id_deck") == []


def test_cheapest_path_wins_over_fewest_hops() -> None:
    places = {
        "a": loc("a", {"arm": 1, "slow": 1}),
        "b": loc("b", {"arm": 2}),
        "c": loc("c", {"arm": 3, "slow": 3}),
    }
    slow = {"node_name": "slow", "action": "go", "cost_weight": 5.0}
    assert route("a", "c", locations=places, capabilities=caps(ARM, slow)) == [("arm", "a", "c")]
    cheap = {"node_name": "slow", "action": "go", "cost_weight": 0.5}
    assert route("a", "c", locations=places, capabilities=caps(ARM, cheap)) == [("slow", "a", "c")]


def test_overrides_take_precedence_pair_then_source_then_target() -> None:
    places = {
        "a": loc("a", {"arm": 1, "lift": 1, "crane": 1}),
        "b": loc("b", {"arm": 2, "lift": 2, "crane": 2}),
    }
    lift = {**LIFT}
    crane = {"node_name": "crane", "action": "swing"}
    over = {
        "source_overrides": {"a": [lift]},
        "target_overrides": {"id_b": [crane]},
    }
    c = caps(ARM, override_transfer_templates=over)
    assert route("a", "b", locations=places, capabilities=c) == [("lift", "a", "b")]
    assert route("b", "a", locations=places, capabilities=c) == [("arm", "b", "a")]
    over_pair = {**over, "pair_overrides": {"a": {"b": [crane]}}}
    c = caps(ARM, override_transfer_templates=over_pair)
    assert route("a", "b", locations=places, capabilities=c) == [("crane", "a", "b")]


def test_capacity_cost_steers_around_a_full_target() -> None:
    table = ResourceTable()
    full = table.create(ResourceDefinition(resource_name="full_slot", base_type="slot"))[0]
    free = table.create(ResourceDefinition(resource_name="free_slot", base_type="slot"))[0]
    table.create(ResourceDefinition(resource_name="plate"), parent_id=full.resource_id)
    places = {
        "a": loc("a", {"arm": 1}),
        "aa_full": loc("aa_full", {"arm": 2, "lift": 2}, resource_id=full.resource_id),
        "zz_free": loc("zz_free", {"arm": 3, "lift": 3}, resource_id=free.resource_id),
        "c": loc("c", {"lift": 4}),
    }
    # Two equal routes; the tie goes to the first by name, unless the fuller waypoint costs more.
    assert route("a", "c", locations=places, resources=table) == [
        ("arm", "a", "aa_full"),
        ("lift", "aa_full", "c"),
    ]
    enabled = caps(ARM, LIFT, capacity_cost_config={"enabled": True, "full_capacity_multiplier": 8.0})
    kwargs: dict[str, Any] = {"locations": places, "resources": table, "capabilities": enabled}
    assert route("a", "c", **kwargs) == [("arm", "a", "zz_free"), ("lift", "zz_free", "c")]
    assert [h.cost for h in plan_transfer("a", "aa_full", **kwargs)] == [8.0]


@pytest.mark.parametrize(
    ("source", "target", "field", "message"),
    [
        ("stack", "island", "args.target", "no transfer path from 'stack' to 'island'"),
        ("nowhere", "deck", "args.source", "source location 'nowhere' does not exist"),
        ("stack", "nowhere", "args.target", "target location 'nowhere' does not exist"),
        ("stack", "locked", "args.target", "target location 'locked' does not allow transfers"),
    ],
)
def test_bad_transfers_name_the_step_and_the_argument(
    source: str, target: str, field: str, message: str
) -> None:
    places = {**LINE, "locked": loc("locked", {"arm": 9}, allow=False)}
    with pytest.raises(WorkflowValidationError, match=f"step 'move': {message}") as info:
        route(source, target, locations=places, step="move")
    assert info.value.field == field


def test_a_location_that_forbids_transfers_is_not_a_waypoint() -> None:
    places = {**LINE, "deck": loc("deck", {"arm": 1, "lift": 0}, allow=False)}
    with pytest.raises(WorkflowValidationError, match="no transfer path"):
        route("stack", "hotel", locations=places)


def test_without_transfer_capabilities_a_transfer_is_refused() -> None:
    with pytest.raises(WorkflowValidationError, match="declares no transfer_capabilities") as info:
        route("stack", "deck", capabilities=None, step="t")
    assert info.value.field == "action"


# --- expansion at submission -------------------------------------------------------------------------


def nodes(*names: str) -> dict[str, NodeRecord]:
    return {n: NodeRecord(node_url=f"inprocess://{n}") for n in names}


def build(steps: list[dict[str, Any]], *, locations: dict[str, Location] = LINE, **kwargs: Any) -> Any:
    kwargs.setdefault("nodes", nodes("arm", "lift"))
    kwargs.setdefault("transfer_capabilities", caps(ARM, LIFT))
    return build_workflow(
        load_workflow_definition({"name": "wf", "steps": steps}),
        parameter_values={},
        locations=locations,
        **kwargs,
    )


def test_a_transfer_step_becomes_one_node_step_per_hop_each_with_its_own_representation() -> None:
    run = build(
        [
            {
                "name": "to hotel",
                "key": "park",
                "action": "transfer",
                "args": {"source": "stack", "target": "hotel"},
                "conditions": [{"condition_type": "resource_present", "location_name": "stack"}],
                "effects": [{"set": {"resource": "plate", "field": "parked", "value": True}}],
            }
        ]
    )
    first, second = run.steps
    assert (first.node, first.action, second.node, second.action) == ("arm", "transfer", "lift", "move")
    assert first.locations == {
        "source": LocationArgument(representation=[0, 0, 0], location_name="stack"),
        "target": LocationArgument(representation=[1, 0, 0], location_name="deck"),
    }
    assert second.locations == {
        "from_loc": LocationArgument(representation="level_0", location_name="deck"),
        "to_loc": LocationArgument(representation="level_7", location_name="hotel"),
    }
    assert (first.key, second.key) == ("park.transfer_step_1", "park.transfer_step_2")
    assert second.name == "to hotel (transfer_step_2)"
    # The step's own conditions guard the first hop; its own effects follow the last.
    assert len(first.conditions) == 1 and second.conditions == []
    assert [e.kind for e in first.effects] == [] and [e.kind for e in second.effects] == ["set"]
    # The definition is kept as written: a resubmission plans again.
    assert [s.action for s in run.step_definitions] == ["transfer"]


def test_one_hop_keeps_the_step_name_and_key_and_args_and_location_args_come_from_the_template() -> None:
    template = {**ARM, "additional_args": {"speed": 50}, "additional_location_args": {"via": "deck"}}
    run = build(
        [
            {
                "name": "load",
                "key": "load",
                "action": "transfer",
                "args": {"source": "stack", "target": "deck"},
            }
        ],
        transfer_capabilities=caps(template),
    )
    (step,) = run.steps
    assert (step.name, step.key, step.args) == ("load", "load", {"speed": 50})
    assert step.locations["via"] == LocationArgument(representation=[1, 0, 0], location_name="deck")


def test_hops_between_containers_move_the_plate_in_the_resource_model() -> None:
    places = {
        "stack": loc("stack", {"arm": 0}, resource_id="r_stack"),
        "deck": loc("deck", {"arm": 1, "lift": 0}, resource_id="r_deck"),
        "hotel": loc("hotel", {"lift": 7}),
    }
    run = build([{"action": "transfer", "args": {"source": "stack", "target": "hotel"}}], locations=places)
    moves = [[(e.kind, e.source, e.target) for e in s.effects] for s in run.steps]
    # No container at the hotel: nothing to track for that hop.
    assert moves == [[("move", "stack", "deck")], []]


def test_transfer_args_take_parameters() -> None:
    definition = load_workflow_definition(
        {
            "name": "wf",
            "parameters": {"json_inputs": [{"key": "dest"}]},
            "steps": [
                {"name": "a", "action": "transfer", "args": {"source": "stack", "target": "${dest}"}},
                {
                    "name": "b",
                    "action": "transfer",
                    "args": {"source": "deck"},
                    "use_parameters": {"args": {"target": "dest"}},
                },
            ],
        }
    )
    run = build_workflow(
        definition,
        parameter_values={"dest": "deck"},
        nodes=nodes("arm", "lift"),
        locations=LINE,
        transfer_capabilities=caps(ARM, LIFT),
    )
    assert [s.node for s in run.steps] == ["arm"]  # b is deck -> deck: nothing to do


def test_transfer_resource_starts_where_the_resource_is_and_follows_earlier_moves() -> None:
    table = ResourceTable()
    stack = table.create(ResourceDefinition(resource_name="stack", base_type="stack", capacity=5))[0]
    deck = table.create(ResourceDefinition(resource_name="deck_slot", base_type="slot"))[0]
    hotel = table.create(ResourceDefinition(resource_name="hotel_slot", base_type="slot"))[0]
    plate = table.create(ResourceDefinition(resource_name="plate_1"), parent_id=stack.resource_id)[0]
    places = {
        "stack": loc("stack", {"arm": 0}, resource_id=stack.resource_id),
        "deck": loc("deck", {"arm": 1, "lift": 0}, resource_id=deck.resource_id),
        "hotel": loc("hotel", {"lift": 7}, resource_id=hotel.resource_id),
    }
    run = build(
        [
            {
                "name": "up",
                "action": "transfer_resource",
                "args": {"resource_id": plate.resource_id, "target": "hotel"},
            },
            {
                "name": "back",
                "action": "transfer_resource",
                "args": {"resource_id": "plate_1", "target": "deck"},
            },
        ],
        locations=places,
        resources=table,
    )
    route_taken = [(s.node, s.effects[0].source, s.effects[0].target) for s in run.steps]
    assert route_taken == [("arm", "stack", "deck"), ("lift", "deck", "hotel"), ("lift", "hotel", "deck")]


@pytest.mark.parametrize(
    ("step", "field", "message"),
    [
        ({"action": "transfer", "args": {"source": "stack"}}, "args", "needs argument 'target'"),
        (
            {"action": "transfer", "args": {"source": "stack", "target": "deck", "speed": 3}},
            "args",
            "takes .* not \\['speed'\\]",
        ),
        (
            {"action": "transfer", "args": {"source": "stack", "target": "deck"}, "locations": {"x": "deck"}},
            "locations",
            "names its places in args",
        ),
        (
            {"action": "transfer", "args": {"source": "stack", "target": "deck", "await_completion": "no"}},
            "args.await_completion",
            "true or false",
        ),
        (
            {"action": "transfer", "args": {"source": "stack", "target": 3}},
            "args.target",
            "known at submission",
        ),
        (
            {"action": "transfer_resource", "args": {"resource_id": "ghost", "target": "deck"}},
            "args.resource_id",
            "no resource 'ghost'",
        ),
    ],
)
def test_malformed_transfer_steps_are_refused(step: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(WorkflowValidationError, match=f"step 'mv': .*{message}") as info:
        build([{"name": "mv", **step}], resources=ResourceTable())
    assert info.value.field == field


def test_a_hop_is_checked_like_any_node_step() -> None:
    # The template's extra location has no representation for the arm.
    template = {**ARM, "additional_location_args": {"via": "hotel"}}
    with pytest.raises(
        WorkflowValidationError, match="step 'mv': location 'hotel' has no representation for node 'arm'"
    ):
        build(
            [{"name": "mv", "action": "transfer", "args": {"source": "stack", "target": "deck"}}],
            transfer_capabilities=caps(template),
        )
    # The template's node is not in the workcell.
    with pytest.raises(WorkflowValidationError, match="step 'mv': node 'arm' is not in the workcell") as info:
        build(
            [{"name": "mv", "action": "transfer", "args": {"source": "stack", "target": "deck"}}],
            nodes=nodes("lift"),
        )
    assert info.value.field == "node"


def test_a_transfer_target_from_a_feed_forward_value_is_refused() -> None:
    definition = load_workflow_definition(
        {
            "name": "wf",
            "parameters": {"feed_forward": [{"key": "dest", "step": "pick", "label": "json_result"}]},
            "steps": [
                {"name": "pick", "node": "arm", "action": "noop"},
                {"name": "mv", "action": "transfer", "args": {"source": "stack", "target": "${dest}"}},
            ],
        }
    )
    with pytest.raises(
        WorkflowValidationError, match="step 'mv': 'target' of a transfer comes from a feed-forward"
    ):
        build_workflow(
            definition,
            parameter_values={},
            nodes=nodes("arm"),
            locations=LINE,
            transfer_capabilities=caps(ARM),
        )


def test_the_workcell_file_declares_transfer_capabilities_under_madsci_names() -> None:
    doc = {
        "name": "cell",
        "locations": [{"location_name": "a", "representations": {"arm": 1}, "allow_transfers": False}],
        "location_transfer_capabilities": {
            "transfer_templates": [ARM],
            "override_transfer_templates": {"pair_overrides": {"a": {"b": [LIFT]}}},
            "capacity_cost_config": {"enabled": True},
        },
    }
    cell = WorkcellDefinition.model_validate(doc)
    assert cell.transfer_capabilities is not None
    assert cell.transfer_capabilities.transfer_templates[0].source_argument_name == "source"
    assert cell.locations[0].allow_transfers is False
    with pytest.raises(ValueError, match="cost_wieght"):
        caps({**ARM, "cost_wieght": 2})


# --- end to end, through the engine with the simulated robot arm ------------------------------------------

WORKCELL: dict[str, Any] = {
    "name": "transfer_cell",
    "locations": [
        {
            "location_name": "plate_stack",
            "representations": {"robotarm_1": [0, 0, 100]},
            "resource_definition": {
                "resource_name": "plate_stack",
                "base_type": "stack",
                "capacity": 10,
                "children": [{"resource_name": "assay_plate", "resource_class": "plate_96"}],
            },
        },
        {
            "location_name": "lh_deck",
            "representations": {"robotarm_1": [300, 0, 20], "liquidhandler_1": "deck_1"},
            "resource_definition": {"resource_name": "lh_deck_slot", "base_type": "slot"},
        },
        {
            "location_name": "reader_tray",
            "representations": {"robotarm_1": [900, 0, 20], "platereader_1": "tray"},
            "resource_definition": {"resource_name": "reader_slot", "base_type": "slot"},
        },
    ],
    "transfer_capabilities": {
        "transfer_templates": [
            {
                "node_name": "robotarm_1",
                "action": "transfer",
                "source_argument_name": "source",
                "target_argument_name": "target",
            }
        ]
    },
}


async def test_transfer_steps_run_on_the_sim_arm_and_move_the_plate(tmp_path: Path) -> None:
    from podium.nodes.sim import make_sim_nodes
    from podium.workcell.demo import serve_sim_nodes

    sims = make_sim_nodes(default_duration_s=0.0, work_dir=tmp_path / "nodes")
    arm = {"robotarm_1": sims["robotarm_1"]}
    async with serve_sim_nodes(arm) as urls:
        cell = WorkcellDefinition.model_validate({**WORKCELL, "nodes": urls})
        settings = WorkcellManagerSettings(scheduler_update_interval=30.0, node_update_interval=0.2)
        async with WorkcellEngine(cell, store=MemoryStore(), data_dir=tmp_path, settings=settings) as engine:
            plate = engine.resources.find("assay_plate")
            assert plate is not None
            definition = load_workflow_definition(
                {
                    "name": "shuttle",
                    "steps": [
                        {
                            "name": "to reader",
                            "action": "transfer",
                            "args": {"source": "plate_stack", "target": "reader_tray"},
                        },
                        {
                            "name": "to deck",
                            "action": "transfer_resource",
                            "args": {"resource_id": plate.resource_id, "target": "lh_deck"},
                        },
                    ],
                }
            )
            # Given a plate in the stack, when the workflow of two transfers runs,
            run = await engine.submit(definition)
            done = await asyncio.wait_for(engine.wait_for(run.workflow_id), 20)
            # then the arm did each move with its own coordinates,
            assert done.status.completed
            assert [(s.node, s.action, s.status) for s in done.steps] == [
                ("robotarm_1", "transfer", ActionStatus.SUCCEEDED)
            ] * 2
            moved = await engine.datapoints.get(
                done.get_datapoint_id(done.steps[0].key or done.steps[0].name)
            )
            assert moved.value["source"] == [0, 0, 100] and moved.value["target"] == [900, 0, 20]
            assert sims["robotarm_1"].node_state["transfers"] == 2
            # and the resource model shows the plate on the liquid handler's deck.
            deck = engine.get_location("lh_deck")
            assert deck.resource_id is not None
            assert [r.resource_name for r in engine.resources.children(deck.resource_id)] == ["assay_plate"]
            stack = engine.get_location("plate_stack")
            assert stack.resource_id is not None and engine.resources.children(stack.resource_id) == []


def test_a_step_calling_a_transfer_action_directly_moves_the_plate_too() -> None:
    # MADSci's example_workflow calls robotarm_1.transfer with locations source/target; MADSci's node moves
    # the plate in MADSci's resource manager, podium's workcell records the same move.
    held = {
        "a": loc("a", {"arm": 1}, resource_id="r_a"),
        "b": loc("b", {"arm": 2}, resource_id="r_b"),
        "bare": loc("bare", {"arm": 3}),
    }
    step = {"name": "t", "node": "arm", "action": "transfer"}
    run = build(
        [
            {**step, "locations": {"source": "a", "target": "b"}},
            {**step, "locations": {"source": "a", "target": "bare"}},
            {
                **step,
                "locations": {"source": "a", "target": "b"},
                "effects": [{"set": {"resource": "x", "field": "lid", "value": 1}}],
            },
        ],
        locations=held,
        nodes=nodes("arm"),
        transfer_capabilities=caps(ARM),
    )
    first, no_container, own = run.steps
    assert [(e.kind, e.source, e.target) for e in first.effects] == [("move", "a", "b")]
    assert no_container.effects == []
    assert [e.kind for e in own.effects] == ["set"]
