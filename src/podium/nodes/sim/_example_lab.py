"""Twins of the instruments of MADSci 0.8's ``examples/example_lab`` (``example_modules/*.py``).

Each twin declares the same actions with the same argument names, types and defaults as MADSci's example
node, so its ``/info`` reads the same to a workcell and MADSci's workflows run on it unchanged. The results
have the same shapes (a liquid handler's ``run_command`` echoes the command, ``run_protocol`` answers
``{"protocol_name": ...}``, the plate reader's ``read_plate`` returns a file), with plausible content where
MADSci's fakes write placeholders (the plate read is a CSV of 96 absorbances). Durations are MADSci's
``wait_time`` (2 s; a transfer takes ``100 / speed`` s) on the node's clock, so a ``ManualClock`` or
``default_duration_s=0`` makes them instant. MADSci's nodes also keep their resources in its resource
manager; podium's workcell tracks resources itself (a transfer's ``move``), so the twins do not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, Field

from podium.nodes._node import ActionFiles, action
from podium.nodes.sim._base import SimNode
from podium.nodes.sim._instruments import WELLS_96
from podium.wire.madsci_node import LocationArgument

__all__ = [
    "EXAMPLE_LAB_NODE_TYPES",
    "AdvancedExampleNode",
    "ExampleLiquidHandlerNode",
    "ExamplePlateReaderNode",
    "ExampleRobotArmNode",
]

WAIT_TIME_S = 2.0
"""MADSci's example nodes' ``wait_time`` default."""


class ExampleLiquidHandlerNode(SimNode):
    """MADSci's ``example_modules/liquidhandler.py``: run a command, run a protocol file, move labware
    between its decks."""

    node_name = "liquidhandler_1"
    module_name = "liquidhandler"
    default_durations: ClassVar[dict[str, float]] = {
        "run_command": WAIT_TIME_S,
        "run_protocol": WAIT_TIME_S,
        "deck_transfer": WAIT_TIME_S,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"liquid_handler_status_code": 0, "commands": [], "protocols_run": 0}

    @action
    async def run_command(self, command: str) -> str:
        """Execute a direct hardware command on the liquid handler."""
        await self.simulate()
        self.node_state["commands"] = [*self.node_state["commands"][-9:], command]
        return command

    @action
    async def run_protocol(self, protocol: Path) -> dict[str, Any]:
        """Execute a protocol file on the liquid handler."""
        await self.simulate()
        self.node_state["protocols_run"] += 1
        return {"protocol_name": str(protocol.name)}

    @action
    async def deck_transfer(
        self, source_location: LocationArgument, target_location: LocationArgument
    ) -> None:
        """Transfer labware between deck locations on the liquid handler."""
        await self.simulate()


class PlateFiles(ActionFiles):
    """The two files of ``read_plates`` (MADSci's ``PlateFiles``)."""

    file_path_1: Path
    file_path_2: Path


class ExamplePlateReaderNode(SimNode):
    """MADSci's ``example_modules/platereader.py``: read a well (a number), a plate (a file), two plates."""

    node_name = "platereader_1"
    module_name = "platereader"
    default_durations: ClassVar[dict[str, float]] = {
        "read_well": WAIT_TIME_S,
        "read_plate": WAIT_TIME_S,
        "read_plates": WAIT_TIME_S,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"plate_reader_status_code": 0, "reads": 0}

    def _write_read(self, name: str) -> Path:
        values = [round(0.05 + self.rng.random() * 1.5, 4) for _ in WELLS_96]
        self.node_state["reads"] += 1
        path = self.output_path(f"{name}_{self.node_state['reads']}.csv")
        path.write_text(
            "well,absorbance\n" + "".join(f"{w},{v}\n" for w, v in zip(WELLS_96, values, strict=True))
        )
        return path

    @action
    async def read_well(self) -> int:
        """Read a well on the plate reader."""
        await self.simulate()
        return self.rng.randint(0, 10)

    @action
    async def read_plate(self) -> Path:
        """Read a plate on the plate reader (a CSV with columns ``well,absorbance``)."""
        await self.simulate()
        return self._write_read("plate")

    @action
    async def read_plates(self) -> PlateFiles:
        """Read two plates: one file each."""
        await self.simulate()
        return PlateFiles(file_path_1=self._write_read("plate_1"), file_path_2=self._write_read("plate_2"))


class ExampleRobotArmNode(SimNode):
    """MADSci's ``example_modules/robotarm.py``: move a plate between two locations at a speed."""

    node_name = "robotarm_1"
    module_name = "robotarm"
    config_speed = 50.0
    """MADSci's ``RobotArmConfig.speed`` (mm/s): a transfer takes ``100 / speed`` seconds."""
    default_durations: ClassVar[dict[str, float]] = {"transfer": 100 / 50.0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"robot_arm_status_code": 0, "transfers": 0, "position": None}

    @action
    async def transfer(
        self,
        source: Annotated[LocationArgument, "The source location"],
        target: Annotated[LocationArgument, "the target location"],
        speed: Annotated[float | None, "The speed of the transfer, in 1-100 mm/s"] = None,
    ) -> None:
        """Transfer a plate from one location to another, at the specified speed."""
        speed = max(1.0, min(100.0, speed or self.config_speed))
        base = self.durations.get("transfer", self.default_duration_s or 0.0)
        await self.simulate(duration_s=base * self.config_speed / speed)
        self.node_state["transfers"] += 1
        self.node_state["position"] = target.location_name or target.representation


class AnalysisResult(BaseModel):
    """MADSci's example custom result model."""

    sample_id: str = Field(description="Unique identifier for the sample")
    concentration: float = Field(description="Measured concentration in mg/mL")
    ph_level: float = Field(description="pH level of the sample")
    temperature: float = Field(description="Temperature in Celsius during measurement")
    quality_score: int = Field(description="Quality score from 0-100", ge=0, le=100)
    notes: str = Field(default="", description="Additional notes about the analysis")


class SampleProcessingRequest(BaseModel):
    """MADSci's example complex input model."""

    sample_ids: list[str] = Field(description="List of sample identifiers to process")
    processing_type: str = Field(description="Type of processing to perform")
    parameters: dict[str, str | int | float] = Field(description="Processing parameters")
    priority: int = Field(description="Processing priority (1-10)", ge=1, le=10)
    notify_on_completion: bool = Field(default=False, description="Whether to send notifications")


class ExampleFileData(ActionFiles):
    """Two labelled log files (MADSci's ``ExampleFileData``)."""

    log_file_1: Path
    log_file_2: Path


class AdvancedExampleNode(SimNode):
    """MADSci's ``example_modules/advanced_example_module.py``: return and argument shapes of every kind,
    and ``stall``, an action that just takes its time."""

    node_name = "advanced_example_node"
    module_name = "advanced_example_node"
    default_durations: ClassVar[dict[str, float]] = {"stall": WAIT_TIME_S}

    def _text(self, name: str, content: str) -> Path:
        path = self.output_path(name)
        path.write_text(content)
        return path

    def _logs(self) -> ExampleFileData:
        return ExampleFileData(
            log_file_1=self._text("test1.txt", "test1"), log_file_2=self._text("test2.txt", "test2")
        )

    @action
    async def return_none(self) -> None:
        """Return nothing."""

    @action
    async def stall(self) -> None:
        """Stall a set amount of time."""
        await self.simulate()

    @action
    async def return_json(self) -> int:
        """Return a JSON object."""
        return 5

    @action
    async def return_dict(self) -> dict[str, Any]:
        """Return a JSON object."""
        return {"a": "dict"}

    @action
    async def return_file(self) -> Path:
        """Return a file."""
        return self._text("test.txt", "test")

    @action
    async def return_file_and_json(self) -> tuple[int, Path]:
        """Return data and a file."""
        return 5, self._text("test.txt", "test")

    @action
    async def return_labeled_json_values(self) -> dict[str, Any]:
        """Return labeled JSON values."""
        return {"example_value_1": "test", "example_value_2": 5}

    @action
    async def return_labeled_file_values(self) -> ExampleFileData:
        """Return labeled file values."""
        return self._logs()

    @action
    async def return_labeled_file_and_json_values(self) -> tuple[dict[str, Any], ExampleFileData]:
        """Return labeled file and json values."""
        return {"example_value_1": "test", "example_value_2": 5}, self._logs()

    @action
    async def return_analysis_result(self, sample_id: str = "SAMPLE_001") -> AnalysisResult:
        """Return a custom pydantic model with analysis results."""
        return AnalysisResult(
            sample_id=sample_id,
            concentration=15.75,
            ph_level=7.2,
            temperature=22.5,
            quality_score=92,
            notes="Analysis completed successfully",
        )

    @action
    async def test_simple_string(self, message: str) -> str:
        """Test action with a simple string argument."""
        return f"Processed: {message}"

    @action
    async def test_simple_int(self, number: int) -> int:
        """Test action with a simple integer argument."""
        return number * 2

    @action
    async def test_simple_float(self, value: float) -> float:
        """Test action with a simple float argument."""
        return round(value * 3.14, 2)

    @action
    async def test_simple_bool(self, flag: bool) -> bool:
        """Test action with a simple boolean argument."""
        return not flag

    @action
    async def test_multiple_simple_args(
        self, name: str, age: int, height: float, active: bool
    ) -> dict[str, Any]:
        """Test action with multiple simple arguments of different types."""
        return {
            "name": name.upper(),
            "age_doubled": age * 2,
            "height_cm": height * 100,
            "status": "active" if active else "inactive",
        }

    @action
    async def test_optional_string(self, message: str, prefix: str | None = None) -> str:
        """Test action with optional string argument."""
        return f"{prefix}: {message}" if prefix else message

    @action
    async def test_list_args(self, string_list: list[str], number_list: list[int]) -> dict[str, Any]:
        """Test action with list arguments."""
        return {
            "string_count": len(string_list),
            "strings_upper": [s.upper() for s in string_list],
            "number_sum": sum(number_list),
            "number_max": max(number_list) if number_list else 0,
        }

    @action
    async def test_pydantic_input(self, request: SampleProcessingRequest) -> dict[str, Any]:
        """Test action with pydantic model as input."""
        return {
            "processing_type": request.processing_type,
            "sample_count": len(request.sample_ids),
            "priority": request.priority,
            "estimated_time": len(request.sample_ids) * request.priority * 5,
            "notifications_enabled": request.notify_on_completion,
        }

    @action
    async def test_file_input(self, input_file: Path) -> str:
        """Test action with file path input."""
        content = input_file.read_text()  # noqa: ASYNC240 - a small upload; a thread hop lets a virtual clock run ahead
        return f"File content length: {len(content)} characters"

    @action
    async def test_location_input(self, target_location: LocationArgument) -> dict[str, Any]:
        """Test action with location argument."""
        return {
            "location_representation": str(target_location.representation),
            "location_name": target_location.location_name,
            "resource_id": target_location.resource_id,
            "has_reservation": target_location.reservation is not None,
        }


EXAMPLE_LAB_NODE_TYPES: dict[str, type[SimNode]] = {
    "liquidhandler_1": ExampleLiquidHandlerNode,
    "liquidhandler_2": ExampleLiquidHandlerNode,
    "robotarm_1": ExampleRobotArmNode,
    "platereader_1": ExamplePlateReaderNode,
    "advanced_example_node": AdvancedExampleNode,
}
"""MADSci's example lab (``workcell_nodes`` of its settings.yaml): node name -> twin class."""
