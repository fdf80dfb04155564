"""A MADSci 0.8 lab's own configuration (its shared settings.yaml and the WORKCELL_*/LOCATION_* environment)
makes a podium workcell, and every workflow of MADSci's example lab is accepted as written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from podium.errors import ConfigError
from podium.store import MemoryStore
from podium.workcell import (
    ParameterFeedForwardFile,
    ResourceType,
    WorkcellEngine,
    WorkcellManagerSettings,
    load_workflow_definition,
)
from podium.workcell.labconfig import lab_workcell
from podium.workcell.server import build_engine

LAB = Path(__file__).resolve().parents[2] / "examples" / "workcell" / "example_lab"
WORKFLOWS = sorted((LAB / "workflows").glob("*.workflow.yaml"))


def test_madsci_example_lab_settings_make_the_workcell(tmp_path: Path) -> None:
    engine = build_engine(settings_file=LAB / "settings.yaml", data_dir=tmp_path, store_url="memory://")
    wc, settings = engine.workcell, engine.settings
    assert settings.manager_name == "Example Workcell"
    assert wc.name == "Example Workcell" and wc.description and "robot arm" in wc.description
    assert sorted(wc.nodes) == [
        "advanced_example_node",
        "liquidhandler_1",
        "liquidhandler_2",
        "platereader_1",
        "robotarm_1",
    ]
    assert wc.nodes["robotarm_1"] == "http://localhost:2002/"
    by_name = {loc.location_name: loc for loc in wc.locations}
    assert len(by_name) == 10
    deck = by_name["liquidhandler_1.deck_1"]
    assert deck.location_id == "01K5HDZZCF27YHD2WDGSXFPPKF"
    assert deck.representations["robotarm_1"]["position"] == [10, 15, 5]
    # Resources made from the lab's templates (resource_default_templates), with the location's
    # overrides on top and the location's name, as MADSci's location manager asks for them.
    assert deck.resource_definition is not None
    assert deck.resource_definition.resource_name == "liquidhandler_1.deck_1"
    assert deck.resource_definition.base_type == ResourceType.SLOT
    assert deck.resource_definition.resource_description == (
        "Deck position accessible by liquid handler and robot arm"
    )
    rack = by_name["storage_rack"].resource_definition
    assert rack is not None and rack.base_type == ResourceType.STACK and rack.capacity == 16
    carriage = by_name["platereader_1.plate_carriage"].resource_definition
    assert carriage is not None and carriage.resource_class == "plate_carriage"
    caps = wc.transfer_capabilities
    assert caps is not None and [t.node_name for t in caps.transfer_templates] == [
        "robotarm_1",
        "liquidhandler_1",
        "liquidhandler_2",
    ]
    assert caps.override_transfer_templates is not None
    assert caps.override_transfer_templates.source_overrides is not None
    assert caps.override_transfer_templates.source_overrides["storage_rack"][0].cost_weight == 0.8
    assert caps.capacity_cost_config is not None and caps.capacity_cost_config.full_capacity_multiplier == 8.0


async def test_the_locations_resources_exist_once_the_engine_runs(tmp_path: Path) -> None:
    settings = WorkcellManagerSettings.load(settings_file=LAB / "settings.yaml", data_dir=tmp_path)
    workcell = lab_workcell(settings, settings_file=LAB / "settings.yaml")
    workcell.nodes = {}  # no instruments here: only the locations and their resources
    async with WorkcellEngine(workcell, store=MemoryStore(), data_dir=tmp_path, settings=settings) as engine:
        rack = engine.locations["storage_rack"]
        assert rack.resource_id is not None
        resource = engine.resources.get(rack.resource_id)
        assert resource.resource_name == "storage_rack" and resource.base_type == ResourceType.STACK


def test_madsci_environment_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "settings.yaml").write_text("workcell_manager_name: from-file\nlab_server_url: http://x/\n")
    monkeypatch.setenv("WORKCELL_MANAGER_NAME", "from-env")
    monkeypatch.setenv("WORKCELL_NODES", '{"arm": "http://127.0.0.1:2999"}')
    monkeypatch.setenv(
        "LOCATION_LOCATIONS",
        '[{"location_name": "nest", "representations": {"arm": [1, 2]}, '
        '"resource_template_name": "location_container"}]',
    )
    monkeypatch.setenv(
        "LOCATION_TRANSFER_CAPABILITIES", '{"transfer_templates": [{"node_name": "arm", "action": "move"}]}'
    )
    engine = build_engine(settings_dir=tmp_path, data_dir=tmp_path, store_url="memory://")
    wc = engine.workcell
    assert engine.settings.manager_name == "from-env" and wc.nodes == {"arm": "http://127.0.0.1:2999"}
    (nest,) = wc.locations
    # MADSci's location manager always knows `location_container`: a one-place slot.
    assert nest.resource_definition is not None and nest.resource_definition.base_type == ResourceType.SLOT
    assert wc.transfer_capabilities is not None
    assert wc.transfer_capabilities.transfer_templates[0].action == "move"


def test_a_bare_key_beats_the_prefixed_one(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("scheduler_update_interval: 3\nworkcell_scheduler_update_interval: 7\n")
    assert WorkcellManagerSettings.load(settings_file=path).scheduler_update_interval == 3
    path.write_text("workcell_scheduler_update_interval: 7\n")
    assert WorkcellManagerSettings.load(settings_file=path).scheduler_update_interval == 7


def test_bad_lab_settings_name_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    locations = [
        {
            "location_name": "nest",
            "representations": {},
            "resource_template_name": "location_container",
            "resource_template_overrides": {"capacity": 2},  # a slot holds one thing
        }
    ]
    path.write_text(yaml.safe_dump({"location_locations": locations}))
    settings = WorkcellManagerSettings.load(settings_file=path)
    with pytest.raises(ConfigError, match=r"settings.yaml.*location_locations.*nest.*capacity 1"):
        lab_workcell(settings, settings_file=path)
    with pytest.raises(ConfigError, match="no such settings file"):
        WorkcellManagerSettings.load(settings_file=tmp_path / "missing.yaml")


def test_a_template_no_one_defined_makes_the_generic_container(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "location_locations": [
                    {"location_name": "lh.deck", "resource_template_name": "liquid_handler_deck_slot"}
                ]
            }
        )
    )
    settings = WorkcellManagerSettings.load(settings_file=path)
    (loc,) = lab_workcell(settings, settings_file=path).locations
    assert loc.resource_definition is not None
    assert loc.resource_definition.resource_class == "LocationContainer"
    assert loc.resource_definition.resource_name == "lh.deck"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name.split(".")[0])
def test_every_example_lab_workflow_is_accepted(path: Path) -> None:
    definition = load_workflow_definition(path)
    assert definition.steps


def test_unknown_step_fields_are_kept_and_feed_forward_files_inferred() -> None:
    admin = load_workflow_definition(LAB / "workflows" / "admin_commands_test.workflow.yaml")
    assert (admin.steps[1].model_extra or {})["comment"].startswith("Stall while running")
    assert admin.model_dump(mode="json")["steps"][0]["comment"].startswith("Test workflow step")
    ff = load_workflow_definition(LAB / "workflows" / "test_feedforward_data.workflow.yaml")
    (param,) = ff.parameters.feed_forward
    # `data_type: file` without `parameter_type`: a feed-forward file, as MADSci infers it.
    assert isinstance(param, ParameterFeedForwardFile) and param.step == "generate"
