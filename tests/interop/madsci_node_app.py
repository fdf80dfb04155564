"""An unmodified MADSci 0.8.1 node, run with the peer venv's python by the interop tests.

Usage: ``python madsci_node_app.py PORT WORKDIR``. It is written only against ``madsci.node_module``
(no podium import), the way a MADSci user writes a node.
"""

import sys
from pathlib import Path

from madsci.common.types.location_types import LocationArgument
from madsci.common.types.node_types import RestNodeConfig
from madsci.node_module import RestNode, action


class InteropNode(RestNode):
    """A tiny instrument: adds numbers, counts bytes of an uploaded file, writes a report file."""

    workdir = Path(".")

    @action
    def add(self, a: int, b: int = 1) -> dict:
        """Add two numbers."""
        return {"sum": a + b}

    @action
    def count_bytes(self, data: Path) -> dict:
        """Count the bytes of an uploaded file."""
        content = Path(data).read_bytes()
        return {"n_bytes": len(content), "first": content[:8].decode(errors="replace")}

    @action
    def make_report(self, rows: int) -> Path:
        """Write a CSV report with ``rows`` rows."""
        path = self.workdir / "report.csv"
        path.write_text("i,value\n" + "".join(f"{i},{i * i}\n" for i in range(rows)))
        return path

    @action
    def move(self, source: LocationArgument, target: LocationArgument) -> dict:
        """Pretend to move a plate between two locations."""
        return {
            "from": source.representation,
            "to": target.representation,
            "names": [source.location_name, target.location_name],
        }

    @action
    def broken(self, reason: str = "boom") -> dict:
        """Always fails."""
        raise RuntimeError(reason)


if __name__ == "__main__":
    port = int(sys.argv[1])
    InteropNode.workdir = Path(sys.argv[2])
    config = RestNodeConfig(
        node_url=f"http://127.0.0.1:{port}",
        node_name="interop_node",
        enable_registry_resolution=False,
    )
    InteropNode(node_config=config).start_node()
