"""Write an instrument node with podium's node SDK, serve it, and drive it with NodeClient.

Run: ``python examples/nodes/custom_node.py`` (add ``--serve PORT`` to keep serving it).
A node written this way speaks MADSci's node REST protocol: MADSci's RestNodeClient can drive it too.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

from podium.nodes import ActionFailed, LocationArgument, NodeClient, NodeServer, RestNode, action


class Spectrometer(RestNode):
    """A toy spectrometer."""

    node_name = "spectrometer_1"

    def startup_handler(self) -> None:
        self.node_state = {"lamp_on": True, "scans": 0}

    @action
    async def scan(
        self,
        start_nm: Annotated[int, "first wavelength"] = 400,
        stop_nm: Annotated[int, "last wavelength"] = 700,
        sample: LocationArgument | None = None,
    ) -> tuple[dict[str, Any], Path]:
        """Scan a sample; returns a summary and a CSV spectrum."""
        if stop_nm <= start_nm:
            raise ActionFailed("stop_nm must be above start_nm", error_type="InvalidRange")
        await self.clock.sleep(0.01)  # the instrument's time, on the node's clock
        path = self.output_path("spectrum.csv")
        path.write_text(
            "nm,intensity\n" + "".join(f"{nm},{(nm % 97) / 97:.3f}\n" for nm in range(start_nm, stop_nm))
        )
        self.node_state["scans"] += 1
        where = sample.location_name if sample else None
        return {"points": stop_nm - start_nm, "sample": where}, path

    @action
    def calibrate(self, reference: Path) -> dict[str, int]:
        """Calibrate against a reference file (a sync action runs in a worker thread)."""
        return {"reference_bytes": len(reference.read_bytes())}


async def demo() -> None:
    with tempfile.TemporaryDirectory() as tmp, NodeServer(Spectrometer()) as server:
        async with NodeClient(server.url) as client:
            info = await client.get_info()
            print("actions:", sorted(info.actions))
            sample = LocationArgument(representation={"slot": 3}, location_name="cuvette_holder")
            out = await client.run_action("scan", {"start_nm": 450, "sample": sample}, download_dir=tmp)
            print("scan:", out.status.value, out.json_result, "->", out.files["file"].name)
            reference = Path(tmp) / "reference.dat"
            reference.write_bytes(b"\x00" * 64)
            out = await client.run_action("calibrate", files={"reference": reference})
            print("calibrate:", out.status.value, out.json_result)
            bad = await client.run_action("scan", {"start_nm": 700, "stop_nm": 400})
            print("bad scan:", bad.status.value, bad.error_message)
            print("state:", await client.get_state())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        Spectrometer().start_node(port=int(sys.argv[2]))
    else:
        asyncio.run(demo())
