"""Workflow definitions, parameters, conditions, resources and the checked path join."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium.workcell import (
    ExpressionCondition,
    ParameterError,
    ResourceDefinition,
    ResourceTable,
    UnsafePathError,
    WorkflowDefinition,
    WorkflowValidationError,
    load_workflow_definition,
)
from podium.workcell.conditions import Operator, parse_expression
from podium.workcell.files import safe_filename, safe_join
from podium.workcell.parameters import find_references, substitute
from podium.workcell.prepare import check_parameters
from podium.workcell.resources import ResourceError


def test_yaml_07_parameter_list_and_root_description(tmp_path: Path) -> None:
    path = tmp_path / "t.workflow.yaml"
    path.write_text(
        """
name: Test
description: a test
parameters:
  - name: volume
    default: 10
  - name: plate_file
    type: file
  - name: reading
    step: read
    label: json_result
steps:
  - name: Read
    key: read
    node: reader
    action: read
    args: {wavelength_nm: 600}
    data_labels: {json_result: absorbance}
"""
    )
    wf = load_workflow_definition(path)
    assert wf.description == "a test"
    assert [p.key for p in wf.parameters.json_inputs] == ["volume"]
    assert wf.parameters.json_inputs[0].default == 10
    assert [p.key for p in wf.parameters.file_inputs] == ["plate_file"]
    assert wf.parameters.feed_forward[0].parameter_type == "feed_forward_json"
    assert wf.steps[0].data_labels == {"json_result": "absorbance"}


def test_08_typed_parameters_and_use_parameters() -> None:
    wf = WorkflowDefinition.model_validate(
        {
            "name": "typed",
            "parameters": {
                "json_inputs": [{"key": "speed", "default": 2}],
                "feed_forward": [{"key": "ff", "step": 0, "parameter_type": "feed_forward_json"}],
            },
            "steps": [
                {"name": "s", "node": "arm", "action": "noop", "use_parameters": {"args": {"speed": "speed"}}}
            ],
        }
    )
    assert wf.parameters.key_set() == {"speed", "ff"}
    assert wf.steps[0].use_parameters is not None and wf.steps[0].use_parameters.args == {"speed": "speed"}


def test_yaml_errors_name_the_step_and_field() -> None:
    with pytest.raises(WorkflowValidationError, match=r"step .Move.*actoin"):
        load_workflow_definition({"name": "w", "steps": [{"name": "Move", "node": "arm", "actoin": "x"}]})
    with pytest.raises(WorkflowValidationError, match="needs an action"):
        load_workflow_definition({"name": "w", "steps": [{"name": "Move", "node": "arm"}]})
    with pytest.raises(WorkflowValidationError, match="unique"):
        load_workflow_definition(
            {"name": "w", "steps": [{"key": "a", "action": "x"}, {"key": "a", "action": "y"}]}
        )


def test_substitution_keeps_types_and_embeds_text() -> None:
    values = {"n": 3, "name": "plate"}
    assert substitute("${n}", values) == 3
    assert substitute("$n", values) == 3
    assert substitute("well_${n}_of_$name", values) == "well_3_of_plate"
    assert substitute({"a": ["$n", {"b": "${name}"}]}, values) == {"a": [3, {"b": "plate"}]}
    assert substitute("$unknown", values) == "$unknown"
    assert find_references({"x": "${a} and $b"}) == {"a", "b"}


def test_check_parameters_missing_and_defaults() -> None:
    wf = load_workflow_definition(
        {
            "name": "w",
            "parameters": [{"name": "a"}, {"name": "b", "default": 1}, {"name": "c", "default": None}],
            "steps": [{"action": "x", "node": "arm"}],
        }
    )
    with pytest.raises(ParameterError, match="'a' has no value") as exc:
        check_parameters(wf, {}, {})
    assert exc.value.parameter == "a"
    with pytest.raises(ParameterError, match="'c' has no value"):
        check_parameters(wf, {"a": 5}, {})
    assert check_parameters(wf, {"a": 5, "c": None}, {}) == {"a": 5, "b": 1, "c": None}
    with pytest.raises(ParameterError, match="unknown parameter 'zz'"):
        check_parameters(wf, {"a": 1, "zz": 2}, {})


def test_expression_parser_never_evaluates() -> None:
    parsed = parse_expression("tips.quantity >= 8")
    assert (parsed.resource, parsed.path, parsed.operator, parsed.value) == (
        "tips",
        ("quantity",),
        Operator.IS_GREQUAL_TO,
        8,
    )
    parsed = parse_expression('"plate 1".attributes.sealed == true')
    assert parsed.resource == "plate 1" and parsed.value is True
    for bad in ["__import__('os').system('x')", "tips.quantity >= 8 or 1", "tips >= 3", "tips.quantity ~ 3"]:
        with pytest.raises(ValueError):
            parse_expression(bad)
    with pytest.raises(ValueError):
        ExpressionCondition(expression="os.system('rm')")


def test_resource_containers_and_quantities() -> None:
    t = ResourceTable()
    stack = t.create(ResourceDefinition(resource_name="stack", base_type="stack", capacity=2))[0]
    slot = t.create(ResourceDefinition(resource_name="slot", base_type="slot"))[0]
    plate = t.create(ResourceDefinition(resource_name="p1", base_type="asset", resource_class="plate"))[0]
    plate2 = t.create(ResourceDefinition(resource_name="p2"))[0]
    t.push(stack.resource_id, plate.resource_id)
    t.push(stack.resource_id, plate2.resource_id)
    with pytest.raises(ResourceError, match="full"):
        t.push(stack.resource_id, t.create(ResourceDefinition(resource_name="p3"))[0].resource_id)
    t.move(stack.resource_id, slot.resource_id)
    assert (
        t.child_at(slot.resource_id, 0) is not None and t.child_at(slot.resource_id, 0).resource_name == "p2"
    )
    with pytest.raises(ResourceError, match="full"):
        t.move(stack.resource_id, slot.resource_id)
    assert [r.resource_name for r in t.children(stack.resource_id)] == ["p1"]  # nothing changed on failure
    plate_grid = t.create(ResourceDefinition(resource_name="plate96", base_type="grid", rows=8, columns=12))[
        0
    ]
    well = t.create(ResourceDefinition(resource_name="w"), parent_id=plate_grid.resource_id, key="b3")[0]
    assert well.key == "B3"
    with pytest.raises(ResourceError):
        t.create(ResourceDefinition(resource_name="x"), parent_id=plate_grid.resource_id, key="Z99")
    tips = t.create(
        ResourceDefinition(resource_name="tips", base_type="discrete_consumable", quantity=3, capacity=5)
    )[0]
    t.change_quantity(tips.resource_id, -2)
    with pytest.raises(ResourceError, match="cannot take"):
        t.change_quantity(tips.resource_id, -2)
    with pytest.raises(ResourceError, match="capacity"):
        t.change_quantity(tips.resource_id, 10)


def test_safe_join_refuses_escapes(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a", "b.txt") == (tmp_path / "a" / "b.txt").resolve()
    for bad in ["../x", "/etc/passwd", "a/../../x"]:
        with pytest.raises(UnsafePathError):
            safe_join(tmp_path, bad)
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("C:\\evil\\x.csv") == "x.csv"
    with pytest.raises(UnsafePathError):
        safe_filename("..")
