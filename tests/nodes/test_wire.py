"""The wire models read and write MADSci 0.8.1's JSON (samples captured from a real madsci.node_module node)."""

from __future__ import annotations

from podium.wire.madsci_node import (
    ActionDefinition,
    ActionResult,
    ActionStatus,
    AdminCommandResponse,
    Event,
    LocationArgument,
    NodeInfo,
    NodeStatus,
)

MADSCI_STATUS = {
    "busy": False, "running_actions": [], "paused": False, "locked": True, "stopped": False,
    "errored": True, "disconnected": False,
    "errors": [{"message": "bad lamp", "logged_at": "2026-11-23T23:29:34.447125", "error_type": "RuntimeError"}],
    "initializing": False, "waiting_for_config": [], "config_values": {}, "ready": False,
    "description": "Node is locked; Node is in an error state",
}  # fmt: skip

MADSCI_RESULT = {
    "action_id": "01M85BWKFZD1YPE24QFM5EYSPJ", "status": "succeeded", "errors": [], "json_result": None,
    "datapoints": None, "history_created_at": "2026-11-23T23:29:33.825003Z", "files": ["file"],
}  # fmt: skip

MADSCI_ACTION = {
    "name": "add", "description": "Add two numbers.",
    "args": {
        "a": {"name": "a", "description": "", "argument_type": "int", "required": True, "default": None},
        "b": {"name": "b", "description": "", "argument_type": "int", "required": False, "default": 1},
    },
    "locations": {}, "files": {},
    "results": {"json_result": {"result_label": "json_result", "description": None, "result_type": "json",
                                "json_schema": {"type": "object"}}},
    "blocking": True, "asynchronous": True, "accepts_var_args": False, "accepts_var_kwargs": False,
    "var_args_schema": None, "var_kwargs_schema": None,
}  # fmt: skip


def test_status_round_trip_keeps_computed_fields() -> None:
    status = NodeStatus.model_validate(MADSCI_STATUS)
    assert status.locked and status.errored and not status.ready
    assert status.errors[0].error_type == "RuntimeError"
    dumped = status.model_dump(mode="json")
    assert dumped["ready"] is False
    assert dumped["description"] == "Node is locked; Node is in an error state"
    assert set(dumped) == set(MADSCI_STATUS)
    assert NodeStatus().model_dump(mode="json")["description"] == "Node is ready"


def test_result_and_statuses() -> None:
    result = ActionResult.model_validate(MADSCI_RESULT)
    assert result.status is ActionStatus.SUCCEEDED and result.files == ["file"]
    assert set(result.model_dump(mode="json")) == set(MADSCI_RESULT)
    assert ActionResult(status="failed", errors="boom").errors[0].message == "boom"  # type: ignore[arg-type]
    terminal = {s for s in ActionStatus if s.is_terminal}
    assert terminal == {"succeeded", "failed", "cancelled", "not_ready"}


def test_action_definition_accepts_lists_and_info_ignores_new_fields() -> None:
    definition = ActionDefinition.model_validate(
        {**MADSCI_ACTION, "args": list(MADSCI_ACTION["args"].values()), "a_field_from_the_future": 1}  # type: ignore[attr-defined]
    )
    assert list(definition.args) == ["a", "b"] and definition.args["b"].default == 1
    info = NodeInfo.model_validate(
        {
            "node_name": "n",
            "module_name": "m",
            "actions": {"add": MADSCI_ACTION},
            "capabilities": {"admin_commands": ["lock"]},
        }
    )
    assert info.actions["add"].results["json_result"].result_type == "json"


def test_location_argument_accepts_the_older_name() -> None:
    assert LocationArgument.model_validate({"location": [1, 2]}).representation == [1, 2]
    loc = LocationArgument(representation={"x": 1}, location_name="deck")
    assert loc.model_dump(mode="json")["representation"] == {"x": 1}
    assert loc.name == "deck" and loc.location == {"x": 1}


def test_event_serialises_with_underscore_id_and_admin_response() -> None:
    event = Event(event_type="node_start")
    assert "_id" in event.model_dump(mode="json", by_alias=True)
    assert Event.model_validate({"_id": event.event_id}).event_id == event.event_id
    assert (
        AdminCommandResponse.model_validate({"success": False, "errors": [{"message": "x"}]})
        .errors[0]
        .message
        == "x"
    )
