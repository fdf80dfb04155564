"""Simulated instruments: a liquid handler, a robot arm, a plate reader and a sealer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from podium.nodes._node import ActionFailed, action
from podium.nodes.sim._base import SimNode
from podium.wire.madsci_node import LocationArgument

__all__ = ["WELLS_96", "LiquidHandlerNode", "PlateReaderNode", "RobotArmNode", "SealerNode"]

WELLS_96 = [f"{row}{col}" for row in "ABCDEFGH" for col in range(1, 13)]
"""The wells of a 96-well plate, row by row: A1 ... H12."""


def _where(location: LocationArgument | None) -> Any:
    return None if location is None else location.representation


class LiquidHandlerNode(SimNode):
    """A single-channel pipetting robot that uses one tip per aspirate/dispense cycle."""

    node_name = "liquidhandler_1"
    module_name = "sim_liquid_handler"
    default_durations: ClassVar[dict[str, float]] = {
        "aspirate": 2.0,
        "dispense": 2.0,
        "run_protocol": 5.0,
        "refill_tips": 10.0,
    }

    def __init__(self, *, tip_capacity: int = 96, channel_capacity_ul: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tip_capacity, self.channel_capacity_ul = tip_capacity, channel_capacity_ul
        self.node_state = {"tips_remaining": tip_capacity, "has_tip": False, "held_ul": 0.0, "dispensed": {}}

    def _take_tip(self) -> None:
        if self.node_state["has_tip"]:
            return
        if self.node_state["tips_remaining"] <= 0:
            raise ActionFailed("out of tips: refill_tips first", error_type="OutOfTips")
        self.node_state["tips_remaining"] -= 1
        self.node_state["has_tip"] = True

    @action
    async def aspirate(
        self, volume_ul: float, source: LocationArgument | None = None, well: str = "A1"
    ) -> dict[str, Any]:
        """Aspirate ``volume_ul`` from a well of the source (takes a new tip when none is on)."""
        if volume_ul <= 0:
            raise ActionFailed(f"volume_ul must be positive, got {volume_ul}", error_type="InvalidVolume")
        if self.node_state["held_ul"] + volume_ul > self.channel_capacity_ul:
            raise ActionFailed(
                f"cannot hold {self.node_state['held_ul'] + volume_ul} uL (capacity {self.channel_capacity_ul})",
                error_type="OverCapacity",
            )
        await self.simulate()
        self._take_tip()
        self.node_state["held_ul"] += volume_ul
        return {
            "volume_ul": volume_ul,
            "well": well,
            "source": _where(source),
            "held_ul": self.node_state["held_ul"],
            "tips_remaining": self.node_state["tips_remaining"],
        }

    @action
    async def dispense(
        self,
        volume_ul: float | None = None,
        target: LocationArgument | None = None,
        well: str = "A1",
        drop_tip: bool = True,
    ) -> dict[str, Any]:
        """Dispense ``volume_ul`` (all held liquid by default) into a well; drop the tip when empty."""
        held = self.node_state["held_ul"]
        volume = held if volume_ul is None else volume_ul
        if volume <= 0 or volume > held:
            raise ActionFailed(f"cannot dispense {volume} uL holding {held} uL", error_type="InvalidVolume")
        await self.simulate()
        self.node_state["held_ul"] = held - volume
        key = f"{target.location_name or _where(target) if target else 'deck'}:{well}"
        dispensed = self.node_state["dispensed"]
        dispensed[key] = dispensed.get(key, 0.0) + volume
        if drop_tip and self.node_state["held_ul"] == 0:
            self.node_state["has_tip"] = False
        return {
            "volume_ul": volume,
            "well": well,
            "target": _where(target),
            "held_ul": self.node_state["held_ul"],
        }

    @action
    async def run_protocol(self, protocol: Path, repeats: int = 1) -> dict[str, Any]:
        """Run a protocol file: one step per non-empty, non-comment line; each ``aspirate`` line uses a tip."""
        # Small files are read and written inline: a thread hop would let a virtual clock run ahead.
        text = protocol.read_text()  # noqa: ASYNC240
        lines = [ln.strip() for ln in text.splitlines()]
        steps = [ln for ln in lines if ln and not ln.startswith("#")]
        tips = sum(1 for ln in steps if ln.lower().startswith("aspirate")) * repeats
        if tips > self.node_state["tips_remaining"]:
            raise ActionFailed(
                f"protocol needs {tips} tips, {self.node_state['tips_remaining']} left",
                error_type="OutOfTips",
            )
        base = self.durations.get("run_protocol", self.default_duration_s or 0.0)
        await self.simulate(duration_s=base * max(1, len(steps)) * repeats)
        self.node_state["tips_remaining"] -= tips
        return {
            "protocol": protocol.name,
            "steps": len(steps),
            "repeats": repeats,
            "tips_used": tips,
            "tips_remaining": self.node_state["tips_remaining"],
        }

    @action
    async def refill_tips(self) -> dict[str, Any]:
        """Put fresh tip boxes on the deck."""
        await self.simulate()
        self.node_state["tips_remaining"] = self.tip_capacity
        return {"tips_remaining": self.tip_capacity}


class RobotArmNode(SimNode):
    """A plate-moving arm. The workcell owns the resource model; the arm reports what it moved."""

    node_name = "robotarm_1"
    module_name = "sim_robot_arm"
    default_durations: ClassVar[dict[str, float]] = {"transfer": 8.0, "home": 3.0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"position": "home", "transfers": 0}

    @action
    async def transfer(self, source: LocationArgument, target: LocationArgument) -> dict[str, Any]:
        """Pick the plate at ``source`` and place it at ``target``."""
        if source.representation == target.representation:
            raise ActionFailed("source and target are the same place", error_type="InvalidTransfer")
        await self.simulate()
        self.node_state["position"] = target.location_name or target.representation
        self.node_state["transfers"] += 1
        return {
            "source": source.representation,
            "target": target.representation,
            "source_name": source.location_name,
            "target_name": target.location_name,
            "resource_id": source.resource_id,
        }

    @action
    async def home(self) -> dict[str, Any]:
        """Move to the home pose."""
        await self.simulate()
        self.node_state["position"] = "home"
        return {"position": "home"}


class PlateReaderNode(SimNode):
    """An absorbance reader: ``read_plate`` returns a CSV of 96 values and a JSON summary."""

    node_name = "platereader_1"
    module_name = "sim_plate_reader"
    default_durations: ClassVar[dict[str, float]] = {"read_plate": 20.0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"reads": 0}

    @action
    async def read_plate(
        self, wavelength_nm: int = 600, plate: LocationArgument | None = None, label: str = "plate"
    ) -> tuple[dict[str, Any], Path]:
        """Read absorbance at ``wavelength_nm`` in every well; the CSV has columns ``well,absorbance``."""
        if not 200 <= wavelength_nm <= 1000:
            raise ActionFailed(
                f"wavelength {wavelength_nm} nm is out of range 200-1000", error_type="InvalidInput"
            )
        await self.simulate()
        values = [round(0.05 + self.rng.random() * 1.5, 4) for _ in WELLS_96]
        path = self.output_path(f"{label}_{wavelength_nm}nm.csv")
        csv = "well,absorbance\n" + "".join(f"{w},{v}\n" for w, v in zip(WELLS_96, values, strict=True))
        path.write_text(csv)
        self.node_state["reads"] += 1
        summary = {
            "label": label,
            "wavelength_nm": wavelength_nm,
            "n_wells": len(values),
            "mean": round(sum(values) / len(values), 4),
            "min": min(values),
            "max": max(values),
            "plate": _where(plate),
        }
        return summary, path


class SealerNode(SimNode):
    """A heat sealer: ``seal`` puts a foil on the plate, ``peel`` takes it off."""

    node_name = "sealer_1"
    module_name = "sim_sealer"
    default_durations: ClassVar[dict[str, float]] = {"seal": 10.0, "peel": 5.0}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_state = {"sealed": False, "seals": 0}

    @action
    async def seal(self, temperature_c: float = 170.0, time_s: float | None = None) -> dict[str, Any]:
        """Seal the plate at ``temperature_c`` for ``time_s`` (the configured seal time by default)."""
        if self.node_state["sealed"]:
            raise ActionFailed("the plate is already sealed", error_type="AlreadySealed")
        await self.simulate(duration_s=time_s)
        self.node_state["sealed"] = True
        self.node_state["seals"] += 1
        return {"sealed": True, "temperature_c": temperature_c}

    @action
    async def peel(self) -> dict[str, Any]:
        """Remove the seal."""
        if not self.node_state["sealed"]:
            raise ActionFailed("the plate is not sealed", error_type="NotSealed")
        await self.simulate()
        self.node_state["sealed"] = False
        return {"sealed": False}
